"""Onboarding: relay address and invite code, then the TOTP setup, then the unlock PIN; or,
for a user who already has a device, a short code that device approves, then this device's
history, then the PIN.

The relay address must be https, except on this machine's loopback (the demo relay): an
enrolment sends the invite code, and a hospital relay is only ever reached over TLS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from urllib.parse import parse_qs, urlparse

from app.client.engine import Engine, EngineError
from app.client.linking import LINK_WAIT_SECONDS, LinkError, LinkRequest
from app.client.relay_api import RelayError, RelayUnavailable
from app.ui.viewmodels.observable import Observable
from protocol.loopback import is_loopback
from storage.custody import CustodyError
from storage.custody_pin import MIN_PIN_LENGTH

log = logging.getLogger(__name__)

Enroll = Callable[[str, str], Awaitable[Engine]]  # (relay URL, invite code) -> enrolled engine
Link = Callable[[str, str], Awaitable[LinkRequest]]  # (relay URL, device name) -> its code
SetPin = Callable[[Engine, str], None]


class Step(StrEnum):
    ACCOUNT = "account"  # relay address and invite code
    LINK = "link"  # a user's further device: relay address and this device's name
    LINK_CODE = "link_code"  # the code shown, waiting for another device to approve it
    HISTORY = "history"  # linked: receiving the history of the user's rooms
    TOTP = "totp"  # first device of the user: scan the QR code, keep the secret
    PIN = "pin"
    DONE = "done"


class Onboarding(Observable):
    """The current ``step``; ``error_key`` (a catalogue key) and ``error_detail`` when the
    last action failed, with everything typed kept. Linking waits up to ``wait`` seconds for
    the approval, then as long again for the history."""

    def __init__(self, enroll: Enroll, link: Link, set_pin: SetPin, relay_url: str = "", *,
                 device_name: str = "", wait: float = LINK_WAIT_SECONDS) -> None:
        super().__init__()
        self._enroll, self._link, self._set_pin, self._wait = enroll, link, set_pin, wait
        self.relay_url = relay_url
        self.invite_code = ""
        self.device_name = device_name
        self.step = Step.ACCOUNT
        self.error_key: str | None = None
        self.error_detail = ""
        self.busy = False
        self.engine: Engine | None = None
        self.link_code: str | None = None  # shown while waiting for the approval
        self.link_minutes = 0  # how long the code stays valid
        self.history_count: int | None = None  # messages a link brought, once received
        self._approval: asyncio.Future[Engine] | None = None
        self._request: LinkRequest | None = None  # the code shown, until approved or withdrawn
        self.withdrawal: asyncio.Future[None] | None = None  # the last code given up

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
        """A failed action ends: its button works again, for a retry."""
        self.busy, self.error_key, self.error_detail = False, key, detail
        self._changed()

    def _relay(self) -> str | None:
        url = self.relay_url.strip().rstrip("/")
        if not _acceptable_relay(url):
            self._fail("onboarding.error.relay_url")
            return None
        return url

    def _start(self) -> None:
        self.busy, self.error_key = True, None
        self._changed()

    async def submit_account(self) -> None:
        url, code = self._relay(), self.invite_code.strip()
        if url is None:
            return
        if len(code) < 8:
            return self._fail("onboarding.error.invite_code")
        self._start()
        try:
            self.engine = await self._enroll(url, code)
        except (RelayError, RelayUnavailable, EngineError, CustodyError) as e:
            return self._fail(_enrolment_failure(e), str(e))
        self.busy = False
        self.step = Step.TOTP if self.engine.totp_uri else Step.PIN
        self._changed()

    # -- linking this device to a user who already has one -----------------------------------
    def _go(self, step: Step) -> None:
        self.step, self.error_key, self.link_code = step, None, None
        self._changed()

    def choose_link(self) -> None:
        """"I already use Liaison on another device": no invite, a code that device approves."""
        self._go(Step.LINK)

    def choose_invite(self) -> None:
        self._go(Step.ACCOUNT)

    async def submit_link(self) -> None:
        """Show a code until another device of the user approves it, then take the history
        that device sends, so that the conversations come with their past messages."""
        url, name = self._relay(), self.device_name.strip()
        if url is None:
            return
        if not name:
            return self._fail("onboarding.link.error.device_name")
        self._start()
        try:
            request = self._request = await self._link(url, name)
            self.link_code, self.link_minutes = request.code, request.expires_in // 60
            self.step = Step.LINK_CODE
            self._changed()
            engine = await self._approved(request)
        except LinkError as e:  # expired, or not approved in time
            self.step, self.link_code = Step.LINK, None
            return self._fail("onboarding.link.error.expired", str(e))
        except (RelayError, RelayUnavailable, EngineError, CustodyError) as e:
            self.step, self.link_code = Step.LINK, None
            return self._fail(_enrolment_failure(e), str(e))
        if engine is None:  # cancelled: cancel_link went back already
            return
        self.step = Step.HISTORY
        self._changed()
        await self._receive_history(engine, request)

    async def _approved(self, request: LinkRequest) -> Engine | None:
        """This device's engine once approved; None when the user cancelled meanwhile."""
        self._approval = asyncio.ensure_future(request.complete(timeout=self._wait))
        try:
            return await self._approval
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():  # the window closed, say
                raise
            return None
        finally:
            self._approval = self._request = None

    async def _receive_history(self, engine: Engine, request: LinkRequest) -> None:
        """Online, for the rooms' Welcomes, then the history; without it the device is linked
        all the same (new messages arrive), so the PIN step follows with the error shown."""
        try:
            await engine.start()
            self.history_count = await engine.receive_history(request, timeout=self._wait)
        except (LinkError, RelayError, RelayUnavailable) as e:
            self.error_key, self.error_detail = "onboarding.link.error.history", str(e)
        self.engine, self.busy, self.step = engine, False, Step.PIN
        self._changed()

    def cancel_link(self) -> None:
        """Stop waiting, withdraw the code (no one may approve it once this device forgets
        its keys), and go back."""
        if self._request is not None:
            self.withdrawal = asyncio.ensure_future(self._withdraw(self._request))
        if self._approval is not None:
            self._approval.cancel()
        self.busy = False
        self._go(Step.LINK)

    async def _withdraw(self, request: LinkRequest) -> None:
        """Unreachable, the relay forgets the code when it expires all the same; approved
        meanwhile, the new device exists: say so, since only another device can revoke it."""
        try:
            if not await request.withdraw():
                self._fail("onboarding.link.error.approved_meanwhile")
        except (RelayError, RelayUnavailable) as e:
            log.info("the link code could not be withdrawn (it expires anyway): %s", e)
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


def _enrolment_failure(error: Exception) -> str:
    """The catalogue key: the relay said no, or could not be asked (or the profile failed)."""
    if isinstance(error, RelayError):
        return "onboarding.error.refused"
    return "onboarding.error.unreachable"


def _acceptable_relay(url: str) -> bool:
    parsed = urlparse(url)
    if not parsed.hostname:
        return False
    if parsed.scheme == "https":
        return True
    return parsed.scheme == "http" and is_loopback(parsed.hostname)
