"""The unlock screen: the PIN opens the profile; too many wrong ones wipe it."""

from __future__ import annotations

from app.client.engine import Engine, EngineError
from app.ui.profile import Profile, UnlockedKey
from app.ui.viewmodels.observable import Observable
from storage.custody import CustodyError
from storage.custody_pin import PinAttemptsExhaustedError, WrongPinError


class Unlock(Observable):
    """``submit`` returns the opened engine, or sets ``error_key`` (and ``remaining``)."""

    def __init__(self, profile: Profile, account_id: str) -> None:
        super().__init__()
        self._profile, self._account_id = profile, account_id
        self.error_key: str | None = None
        self.error_detail = ""
        self.remaining: int | None = None

    def submit(self, pin: str) -> Engine | None:
        try:
            return self._opened(self._profile.pin_lock().unlock(self._account_id, pin))
        except WrongPinError as e:
            self.error_key, self.remaining = "unlock.error.wrong", e.remaining
        except PinAttemptsExhaustedError:
            self.error_key, self.remaining = "unlock.error.wiped", 0
        except (CustodyError, EngineError) as e:
            self.error_key, self.error_detail = "unlock.error.failed", str(e)
        self._changed()
        return None

    def _opened(self, key: bytes) -> Engine:
        """The engine the right PIN opens: the profile, with the key it unwrapped."""
        return Engine.open(self._profile.directory, UnlockedKey(self._account_id, key))
