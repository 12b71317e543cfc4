"""Settings: this user's devices (revoke, approve a new one), a contact's safety number, the
theme, the auto-lock delay and signing out (a wipe, after a confirmation)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from app.client.engine import Engine, EngineError
from app.client.linking import LinkError
from app.client.relay_api import RelayClient, RelayError, RelayUnavailable
from app.ui.preferences import LOCK_CHOICES, Preferences, Theme
from app.ui.viewmodels.observable import Observable
from crypto.safety_number import SafetyNumber, safety_number
from protocol import rest
from storage.custody_wipe import WipeReport

SignOut = Callable[[Engine], Awaitable[WipeReport]]  # wipes the profile, with its custody


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device_id: str
    name: str
    created_at: float
    revoked: bool
    this_device: bool


class Settings(Observable):
    """``devices``, ``linked`` (the device a code approval added), ``safety`` (with whom:
    ``safety_user``), ``preferences``; ``error_key`` when the last action failed."""

    def __init__(self, engine: Engine, profile_dir: Path, sign_out: SignOut) -> None:
        super().__init__()
        self._engine, self._profile_dir, self._sign_out = engine, profile_dir, sign_out
        self.preferences = Preferences.load(profile_dir)
        self.devices: list[DeviceRow] = []
        self.linked: str | None = None  # the name of the device just approved
        self.safety: SafetyNumber | None = None
        self.safety_user: str | None = None
        self.confirming_sign_out = False
        self.signed_out = False
        self.error_key: str | None = None
        self.error_detail = ""

    @property
    def user_id(self) -> str:
        return self._engine.user_id

    def _fail(self, key: str, error: Exception) -> None:
        self.error_key, self.error_detail = key, str(error)
        self._changed()

    # -- devices -------------------------------------------------------------------------------
    async def load_devices(self) -> None:
        try:
            listed = await self._engine.devices()
        except (EngineError, RelayError, RelayUnavailable) as e:
            return self._fail("settings.error.devices", e)
        self.devices = [self._row(d) for d in sorted(listed, key=lambda d: d.created_at)]
        self.error_key = None
        self._changed()

    def _row(self, device: rest.Device) -> DeviceRow:
        return DeviceRow(device.id, device.name, device.created_at.timestamp(), device.revoked,
                         device.id == self._engine.device_id)

    async def revoke(self, device_id: str) -> None:
        try:
            await self._engine.revoke_device(device_id)
        except (EngineError, RelayError, RelayUnavailable) as e:
            return self._fail("settings.error.revoke", e)
        await self.load_devices()

    async def approve_link(self, code: str, totp: str) -> bool:
        """Link the new device showing ``code``: it joins this user's rooms and gets their
        history."""
        code, totp = code.strip(), totp.strip()
        if not code or not (totp.isdigit() and len(totp) == 6):
            self._fail("settings.error.link_input", ValueError(""))
            return False
        try:
            approved = await self._engine.approve_link(code, totp)
        except (EngineError, LinkError, RelayError, RelayUnavailable) as e:
            self._fail("settings.error.link", e)
            return False
        self.linked, self.error_key = approved.device.name, None
        await self.load_devices()
        return True

    # -- safety number -------------------------------------------------------------------------
    async def show_safety_number(self, user_id: str) -> None:
        """The number both users compare: over each one's active devices' identity keys."""
        account = self._engine.account
        try:
            async with RelayClient(account.relay_url) as relay:
                await relay.login(account.device_id, account.signature_private_key)
                mine = (await relay.user_devices(self._engine.user_id)).devices
                theirs = (await relay.user_devices(user_id)).devices
            self.safety = safety_number(self._engine.user_id, _keys(mine), user_id,
                                        _keys(theirs))
        except (RelayError, RelayUnavailable, ValueError) as e:
            return self._fail("settings.error.safety", e)
        self.safety_user, self.error_key = user_id, None
        self._changed()

    # -- preferences ---------------------------------------------------------------------------
    def _save(self, preferences: Preferences) -> None:
        preferences.save(self._profile_dir)
        self.preferences = preferences
        self._changed()

    def set_theme(self, theme: Theme) -> None:
        self._save(self.preferences.model_copy(update={"theme": theme}))

    def set_lock_minutes(self, minutes: int) -> None:
        if minutes not in LOCK_CHOICES:
            raise ValueError(f"auto-lock takes one of {LOCK_CHOICES} minutes, not {minutes}")
        self._save(self.preferences.model_copy(update={"lock_minutes": minutes}))

    # -- signing out ---------------------------------------------------------------------------
    def ask_sign_out(self, asking: bool = True) -> None:
        """Signing out wipes this device: the view asks first (``asking=False`` cancels)."""
        self.confirming_sign_out = asking
        self._changed()

    async def sign_out(self) -> WipeReport | None:
        if not self.confirming_sign_out:
            return None
        report = await self._sign_out(self._engine)
        self.confirming_sign_out, self.signed_out = False, True
        self._changed()
        return report


def _keys(devices: list[rest.Device]) -> list[bytes]:
    return [bytes(d.signature_key) for d in devices if not d.revoked]
