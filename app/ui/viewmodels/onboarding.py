"""Onboarding: relay address and invite code, then the TOTP setup, then the unlock PIN.

The relay address must be https, except on this machine's loopback (the demo relay): an
enrolment sends the invite code, and a hospital relay is only ever reached over TLS.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from urllib.parse import parse_qs, urlparse

from app.client.engine import Engine, EngineError
from app.client.relay_api import RelayError, RelayUnavailable
from app.ui.viewmodels.observable import Observable
from protocol.loopback import is_loopback
from storage.custody import CustodyError
from storage.custody_pin import MIN_PIN_LENGTH

Enroll = Callable[[str, str], Awaitable[Engine]]  # (relay URL, invite code) -> enrolled engine
SetPin = Callable[[Engine, str], None]


class Step(StrEnum):
    ACCOUNT = "account"  # relay address and invite code
    TOTP = "totp"  # first device of the user: scan the QR code, keep the secret
    PIN = "pin"
    DONE = "done"


class Onboarding(Observable):
    """The current ``step``; ``error_key`` (a catalogue key) and ``error_detail`` when the
    last action failed, with everything typed kept."""

    def __init__(self, enroll: Enroll, set_pin: SetPin, relay_url: str = "") -> None:
        super().__init__()
        self._enroll, self._set_pin = enroll, set_pin
        self.relay_url = relay_url
        self.invite_code = ""
        self.step = Step.ACCOUNT
        self.error_key: str | None = None
        self.error_detail = ""
        self.busy = False
        self.engine: Engine | None = None

    @property
    def totp_uri(self) -> str | None:
        """The otpauth:// URI, the QR code's payload; shown once, never stored."""
        return None if self.engine is None else self.engine.totp_uri

    @property
    def totp_secret(self) -> str:
        """The base32 secret inside the URI, for an authenticator typed in by hand."""
        uri = self.totp_uri
        return parse_qs(urlparse(uri).query).get("secret", [""])[0] if uri else ""

    def _fail(self, key: str, detail: str = "") -> None:
        self.error_key, self.error_detail = key, detail
        self._changed()

    async def submit_account(self) -> None:
        url, code = self.relay_url.strip().rstrip("/"), self.invite_code.strip()
        if not _acceptable_relay(url):
            return self._fail("onboarding.error.relay_url")
        if len(code) < 8:
            return self._fail("onboarding.error.invite_code")
        self.busy, self.error_key = True, None
        self._changed()
        try:
            self.engine = await self._enroll(url, code)
        except RelayError as e:
            return self._fail("onboarding.error.refused", str(e))
        except (RelayUnavailable, EngineError, CustodyError) as e:
            return self._fail("onboarding.error.unreachable", str(e))
        finally:
            self.busy = False
        self.step = Step.TOTP if self.engine.totp_uri else Step.PIN
        self._changed()

    def totp_saved(self) -> None:
        self.step = Step.PIN
        self._changed()

    def submit_pin(self, pin: str, again: str) -> None:
        if len(pin) < MIN_PIN_LENGTH or not pin.isdigit():
            return self._fail("onboarding.error.pin_short")
        if pin != again:
            return self._fail("onboarding.error.pin_mismatch")
        assert self.engine is not None, "the PIN step follows enrolment"
        try:
            self._set_pin(self.engine, pin)
        except CustodyError as e:
            return self._fail("onboarding.error.pin_failed", str(e))
        self.error_key, self.step = None, Step.DONE
        self._changed()


def _acceptable_relay(url: str) -> bool:
    parsed = urlparse(url)
    if not parsed.hostname:
        return False
    if parsed.scheme == "https":
        return True
    return parsed.scheme == "http" and is_loopback(parsed.hostname)
