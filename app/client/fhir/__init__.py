"""A FHIR R4 client for the hospital's record (DPI): patients, stays and the staff directory.

Requests are built and answers read by pure functions (``wire``, ``auth``); ``client`` is
the thin httpx transport; every failure surfaces as one ``FhirError`` with a readable message.
"""

from app.client.fhir.client import FhirClient
from app.client.fhir.config import BearerAuth, ClientCredentials, FhirConfig, NoAuth
from app.client.fhir.errors import FhirError

__all__ = ["BearerAuth", "ClientCredentials", "FhirClient", "FhirConfig", "FhirError", "NoAuth"]
