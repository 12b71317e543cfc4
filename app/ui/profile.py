"""A profile as the app opens it: a directory, the custody of its database key, and the
optional unlock PIN that custody then guards (storage.custody_pin)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nacl.pwhash import argon2id

from app.client.engine import ACCOUNT_FILE
from storage.custody import KeyCustody, check_key
from storage.custody_accounts import AccountDirectory
from storage.custody_pin import PinLock


@dataclass(frozen=True, slots=True)
class Profile:
    directory: Path
    custody: KeyCustody

    def account_id(self) -> str | None:
        """The enrolled account's id; None before enrolment."""
        try:
            return (self.directory / ACCOUNT_FILE).read_text("utf-8").strip()
        except FileNotFoundError:
            return None

    def pin_lock(self) -> PinLock:
        return PinLock(self.custody, AccountDirectory(self.directory / "keys"),
                       ops=argon2id.OPSLIMIT_INTERACTIVE, mem=argon2id.MEMLIMIT_INTERACTIVE)


class UnlockedKey:
    """The database key the PIN just unwrapped, handed to Engine.open as its custody: it lives
    in memory only, for this one opening."""

    description = "the key unlocked by the PIN"

    def __init__(self, account_id: str, key: bytes) -> None:
        self._account_id, self._key = account_id, check_key(key)

    def load(self, account_id: str) -> bytes | None:
        return self._key if account_id == self._account_id else None

    def store(self, account_id: str, key: bytes) -> None:
        raise NotImplementedError("an unlocked key is never stored")

    def delete(self, account_id: str) -> bool:
        return False
