"""Command-line options naming a FHIR server, shared by the relay's and the app's commands.

Secrets come from the environment, never from arguments (which ``ps`` shows to everyone).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from record.config import BearerAuth, ClientCredentials, FhirConfig, NoAuth

TOKEN_ENV = "LIAISON_FHIR_TOKEN"
CLIENT_SECRET_ENV = "LIAISON_FHIR_CLIENT_SECRET"


def add_options(parser: argparse.ArgumentParser, *, flag: str = "--base",
                required: bool = True) -> None:
    """The options naming the server: its URL under ``flag`` (``args.base``), then the rest."""
    g = parser.add_argument_group("FHIR server")
    g.add_argument(flag, dest="base", required=required, metavar="URL", help="FHIR R4 base URL")
    g.add_argument("--auth", choices=("none", "bearer", "client-credentials"), default="none",
                   help=f"bearer: token from ${TOKEN_ENV}; client-credentials: OAuth2, "
                        f"secret from ${CLIENT_SECRET_ENV}")
    g.add_argument("--token-url", metavar="URL", help="OAuth2 token endpoint")
    g.add_argument("--client-id")
    g.add_argument("--scope", help="OAuth2 scope to request")
    g.add_argument("--ipp-system", metavar="URI",
                   help="the hospital's IPP identifier system, to find patients by IPP")
    g.add_argument("--ca-bundle", type=Path, metavar="PEM", help="CA bundle to verify TLS with")
    g.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for each answer (default 30)")


def config_from(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) \
        -> FhirConfig:
    """The configuration the options describe; a ValueError says what is missing."""
    auth: NoAuth | BearerAuth | ClientCredentials = NoAuth()
    if args.auth == "bearer":
        auth = BearerAuth(token=_secret(environ, TOKEN_ENV))
    elif args.auth == "client-credentials":
        if not args.token_url or not args.client_id:
            raise ValueError("--auth client-credentials needs --token-url and --client-id")
        auth = ClientCredentials(token_url=args.token_url, client_id=args.client_id,
                                 client_secret=_secret(environ, CLIENT_SECRET_ENV),
                                 scope=args.scope)
    try:
        return FhirConfig(base_url=args.base, auth=auth, read_timeout=args.timeout,
                          verify=args.ca_bundle or True, ipp_system=args.ipp_system)
    except ValidationError as e:
        first = e.errors()[0]
        raise ValueError(f"FHIR configuration: {'.'.join(map(str, first['loc']))}: "
                         f"{first['msg']}") from None


def _secret(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ValueError(f"set {name} in the environment")
    return value
