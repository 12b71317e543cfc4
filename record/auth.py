"""OAuth2 client credentials without I/O: the token request to send, the answer to read,
and a cache that says when the token must be renewed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from record.config import ClientCredentials
from record.errors import FhirError

EARLY_RENEWAL = 30.0  # seconds: renew before expiry so a request never carries a dying token
DEFAULT_LIFETIME = 300.0  # when the answer has no expires_in (RFC 6749 makes it optional)


@dataclass(frozen=True)
class TokenRequest:
    url: str
    form: dict[str, str]
    basic: tuple[str, str]  # client id and secret, sent as HTTP Basic (client_secret_basic)


def token_request(creds: ClientCredentials) -> TokenRequest:
    form = {"grant_type": "client_credentials"}
    if creds.scope:
        form["scope"] = creds.scope
    return TokenRequest(str(creds.token_url), form,
                        (creds.client_id, creds.client_secret.get_secret_value()))


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float  # monotonic clock

    def usable(self, now: float) -> bool:
        return now < self.expires_at - EARLY_RENEWAL


def read_token(status: int, body: bytes, now: float) -> Token:
    """The access token of a token endpoint's answer; its OAuth2 error otherwise."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise FhirError(f"token endpoint: HTTP {status}, not an OAuth2 answer", status)
    if status >= 400 or "access_token" not in data:
        error = data.get("error", "no access_token")
        detail = data.get("error_description")
        raise FhirError(f"token endpoint refused: HTTP {status}: {error}"
                        + (f" ({detail})" if detail else ""), status)
    if str(data.get("token_type", "")).lower() != "bearer":
        raise FhirError(f"token endpoint: token_type {data.get('token_type')!r}, not bearer")
    lifetime = data.get("expires_in", DEFAULT_LIFETIME)
    if not isinstance(lifetime, int | float) or lifetime <= 0:
        raise FhirError(f"token endpoint: invalid expires_in {lifetime!r}")
    return Token(str(data["access_token"]), now + float(lifetime))
