"""Per-hospital FHIR configuration: where the record is, how to authenticate, how long to wait.

Secrets are ``SecretStr`` so they never appear in a repr or a log line; where they come
from (environment, encrypted store) is the caller's business, never a plain file.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, field_validator

INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"  # INS-NIR, the national health identifier
INS_TEST_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"  # INS-NIR of test identities
INS_SYSTEMS = (INS_SYSTEM, INS_TEST_SYSTEM)
FINESS_SYSTEM = "https://finess.esante.gouv.fr"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NoAuth(_Frozen):
    kind: Literal["none"] = "none"


class BearerAuth(_Frozen):
    """A long-lived token issued to Liaison by the hospital."""

    kind: Literal["bearer"] = "bearer"
    token: SecretStr


class ClientCredentials(_Frozen):
    """OAuth2 client credentials grant (RFC 6749 §4.4), client authenticated by HTTP Basic."""

    kind: Literal["client_credentials"] = "client_credentials"
    token_url: AnyHttpUrl
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scope: str | None = None


Auth = Annotated[NoAuth | BearerAuth | ClientCredentials, Field(discriminator="kind")]


class FhirConfig(_Frozen):
    """One hospital's FHIR R4 endpoint."""

    base_url: AnyHttpUrl
    auth: Auth = NoAuth()
    ipp_system: str | None = None  # the hospital's IPP identifier system (an OID URN, usually)
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    verify: bool | Path = True  # False only for a test server; a Path is a CA bundle (PEM)
    page_size: int = Field(default=100, ge=1, le=1000)
    max_pages: int = Field(default=1000, ge=1)  # a server that pages forever is an error

    @field_validator("verify")
    @classmethod
    def _ca_bundle_exists(cls, value: bool | Path) -> bool | Path:
        if isinstance(value, Path) and not value.is_file():
            raise ValueError(f"CA bundle {value} is not a file")
        return value

    @property
    def base(self) -> str:
        """The base URL without a trailing slash, to which ``Type?params`` is appended."""
        return str(self.base_url).rstrip("/")

    def ssl_verify(self) -> bool | ssl.SSLContext:
        """What httpx takes for ``verify``: a context built from the CA bundle, if one is set."""
        if isinstance(self.verify, Path):
            return ssl.create_default_context(cafile=str(self.verify))
        return self.verify
