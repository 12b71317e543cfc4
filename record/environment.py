"""The app's FHIR configuration, read from the environment: the app has no command line for
it, and the same rules (and secret variables) as the CLI's options apply."""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path

from record.config import FhirConfig
from record.options import config_from

BASE_URL_ENV = "LIAISON_FHIR_BASE_URL"
AUTH_KINDS = ("none", "bearer", "client-credentials")  # as the CLI's --auth


def config_from_environment(environ: Mapping[str, str] = os.environ) -> FhirConfig | None:
    """The configuration ``LIAISON_FHIR_*`` describe; None without a base URL (no record to
    search); a ValueError says what is missing or wrong."""
    base = environ.get(BASE_URL_ENV, "").strip()
    if not base:
        return None
    auth = environ.get("LIAISON_FHIR_AUTH", "none")
    if auth not in AUTH_KINDS:
        raise ValueError(f"LIAISON_FHIR_AUTH must be one of {', '.join(AUTH_KINDS)}")
    ca_bundle = environ.get("LIAISON_FHIR_CA_BUNDLE")
    try:
        timeout = float(environ.get("LIAISON_FHIR_TIMEOUT", "30"))
    except ValueError:
        raise ValueError("LIAISON_FHIR_TIMEOUT must be a number of seconds") from None
    return config_from(Namespace(
        base=base, auth=auth,
        token_url=environ.get("LIAISON_FHIR_TOKEN_URL"),
        client_id=environ.get("LIAISON_FHIR_CLIENT_ID"), scope=environ.get("LIAISON_FHIR_SCOPE"),
        ipp_system=environ.get("LIAISON_FHIR_IPP_SYSTEM"),
        ca_bundle=Path(ca_bundle) if ca_bundle else None, timeout=timeout), environ)
