"""A FHIR R4 client for the hospital's record (DPI): patients, stays and the staff directory.

Requests are built and answers read by pure functions (``wire``, ``auth``); ``client`` is
the thin httpx transport; every failure surfaces as one ``FhirError`` with a readable message.
"""

from typing import TYPE_CHECKING, Any

from record.config import BearerAuth, ClientCredentials, FhirConfig, NoAuth
from record.errors import FhirError

if TYPE_CHECKING:
    from record.client import FhirClient

__all__ = ["BearerAuth", "ClientCredentials", "FhirClient", "FhirConfig", "FhirError", "NoAuth"]


def __getattr__(name: str) -> Any:
    """``FhirClient`` on first use: its FHIR models take half a second to import, which the
    app's startup (it imports this package for the configuration) does not wait for."""
    if name == "FhirClient":
        from record.client import FhirClient

        return FhirClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
