"""An optional unlock PIN on top of any key custody, with a wipe after too many wrong PINs.

With a PIN set, custody no longer holds the database key: it holds a random 32-byte secret,
and the database key is wrapped (crypto.key_wrap) under Argon2id(secret || PIN) in the
account's ``pin.lock`` file. Opening the database then needs both what custody guards
(keyring, passphrase, Keystore) and what the user knows; the file alone is useless to an
offline attacker, since the secret makes the PIN unguessable without custody.

Wrong PINs are counted in the same file, next to the wrapped key, and counted *before*
the PIN is tried, so killing the app mid-attempt does not give a free guess. After
``max_attempts`` wrong PINs in a row the account's local data is wiped.

Trade-off, stated plainly: the counter is as strong as the file. Deleting ``pin.lock`` to
reset it also deletes the only wrapped copy of the key, so the data is lost with it.
Restoring an older copy of the file (a rollback) cannot be prevented without a hardware
monotonic counter, which Python cannot reach portably; but whoever can copy files and also
read custody can already guess PINs offline, where only Argon2id's cost and the PIN's
length stand. The counter stops guessing through the app: a found phone, a shared PC.

Every change of the file goes through a staged copy whose integrity check names the custody
secret it belongs to, so a crash between writing the file and updating custody is settled
on the next use in favour of whichever side custody holds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from nacl.pwhash import argon2id

from crypto.errors import DecodeError, UnsupportedError, ValidationError
from crypto.key_wrap import BLOB_SIZE, WrongPassphraseError, unwrap_key, wrap_key
from storage.custody import KEY_SIZE, CustodyError, KeyCustody, replace_durably, write_durably
from storage.custody_accounts import AccountDirectory, AccountPaths
from storage.custody_wipe import WipeReport, wipe_account

MIN_PIN_LENGTH = 4
DEFAULT_MAX_ATTEMPTS = 10

_MAGIC = b"LPL1"
_HEADER = struct.Struct(">4sI")  # magic, wrong PINs since the last right one
_CHECK_SIZE = 16
_FILE_SIZE = _HEADER.size + _CHECK_SIZE + BLOB_SIZE


class PinLockError(CustodyError):
    """No PIN is set, one already is, or the PIN file does not match the key in custody."""


class WrongPinError(CustodyError):
    """The PIN was wrong; ``remaining`` more wrong PINs wipe the account."""

    def __init__(self, remaining: int) -> None:
        super().__init__(f"wrong PIN: {remaining} attempt(s) left before this device is wiped")
        self.remaining = remaining


class PinAttemptsExhaustedError(CustodyError):
    """Too many wrong PINs: the account's local data was wiped (see ``report``)."""

    def __init__(self, report: WipeReport) -> None:
        super().__init__(f"too many wrong PINs: local data wiped ({report})")
        self.report = report


def _check(secret: bytes) -> bytes:
    """Names the custody secret a PIN file belongs to, revealing nothing of it."""
    return hashlib.sha256(b"liaison pin-lock check\x00" + secret).digest()[:_CHECK_SIZE]


def _check_pin(pin: str) -> None:
    if len(pin) < MIN_PIN_LENGTH:
        raise ValueError(f"a PIN has at least {MIN_PIN_LENGTH} characters")


def _pin_bytes(pin: str) -> bytes:
    return unicodedata.normalize("NFC", pin).encode("utf-8")


@dataclass(frozen=True)
class _PinFile:
    failures: int
    check: bytes
    blob: bytes

    def encode(self) -> bytes:
        return _HEADER.pack(_MAGIC, self.failures) + self.check + self.blob

    @classmethod
    def decode(cls, data: bytes) -> _PinFile:
        if len(data) != _FILE_SIZE or data[:4] != _MAGIC:
            raise PinLockError("the PIN file is damaged")
        _, failures = _HEADER.unpack_from(data)
        check_end = _HEADER.size + _CHECK_SIZE
        return cls(failures, data[_HEADER.size : check_end], data[check_end:])


class PinLock:
    """Sets, checks, changes and removes the unlock PIN of accounts kept in ``custody``."""

    def __init__(
        self,
        custody: KeyCustody,
        directory: AccountDirectory,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        before_wipe: Callable[[str], None] = lambda account_id: None,
        ops: int = argon2id.OPSLIMIT_MODERATE,
        mem: int = argon2id.MEMLIMIT_MODERATE,
        allow_weak: bool = False,
    ) -> None:
        """``before_wipe(account_id)`` closes the account's database (AccountSwitcher.release)."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._custody = custody
        self._directory = directory
        self.max_attempts = max_attempts
        self._before_wipe = before_wipe
        self._ops, self._mem, self._allow_weak = ops, mem, allow_weak

    def is_enabled(self, account_id: str) -> bool:
        paths = self._directory.paths(account_id)
        self._settle(paths)
        return paths.pin_lock.exists()

    def failures(self, account_id: str) -> int:
        """Wrong PINs since the last right one."""
        paths = self._directory.paths(account_id)
        self._settle(paths)
        return self._read(paths).failures

    def enable(self, account_id: str, pin: str) -> None:
        """Put the key now in custody under a PIN too; custody keeps only a secret after this."""
        _check_pin(pin)
        if self.is_enabled(account_id):
            raise PinLockError("a PIN is already set: change it instead")
        key = self._custody.load(account_id)
        if key is None:
            raise PinLockError(f"no database key in {self._custody.description} to lock")
        self._seal(self._directory.create(account_id), key, pin)

    def unlock(self, account_id: str, pin: str) -> bytes:
        """The database key, or WrongPinError / PinAttemptsExhaustedError (after the wipe)."""
        paths = self._directory.paths(account_id)
        self._settle(paths)
        state = self._read(paths)
        if state.failures >= self.max_attempts:  # a wipe was due but did not happen
            raise self._wipe(paths)
        secret = self._custody.load(account_id)
        if secret is None or not hmac.compare_digest(_check(secret), state.check):
            where = self._custody.description
            raise PinLockError(f"the PIN file does not match the secret in {where}")
        failures = state.failures + 1
        self._write(paths, _PinFile(failures, state.check, state.blob))
        try:
            key = unwrap_key(state.blob, secret + _pin_bytes(pin), allow_weak=self._allow_weak)
        except WrongPassphraseError:
            if failures >= self.max_attempts:
                raise self._wipe(paths) from None
            raise WrongPinError(self.max_attempts - failures) from None
        except (DecodeError, UnsupportedError, ValidationError) as exc:
            raise PinLockError(f"the PIN file is damaged: {exc}") from exc
        self._write(paths, _PinFile(0, state.check, state.blob))
        return key

    def change(self, account_id: str, old_pin: str, new_pin: str) -> None:
        _check_pin(new_pin)
        key = self.unlock(account_id, old_pin)
        self._seal(self._directory.paths(account_id), key, new_pin)

    def disable(self, account_id: str, pin: str) -> None:
        """Give custody the database key back and delete the PIN file."""
        paths = self._directory.paths(account_id)
        key = self.unlock(account_id, pin)
        staged = paths.staged(paths.pin_lock)
        replace_durably(paths.pin_lock, staged)
        self._custody.store(account_id, key)
        staged.unlink()

    def _seal(self, paths: AccountPaths, key: bytes, pin: str) -> None:
        secret = secrets.token_bytes(KEY_SIZE)
        blob = wrap_key(
            key, secret + _pin_bytes(pin), ops=self._ops, mem=self._mem, allow_weak=self._allow_weak
        )
        staged = paths.staged(paths.pin_lock)
        write_durably(staged, _PinFile(0, _check(secret), blob).encode())
        self._custody.store(paths.account_id, secret)
        replace_durably(staged, paths.pin_lock)

    def _settle(self, paths: AccountPaths) -> None:
        """Finish or undo a change interrupted by a crash: the staged file wins iff it
        belongs to the secret custody holds now."""
        staged = paths.staged(paths.pin_lock)
        try:
            pending = _PinFile.decode(staged.read_bytes())
        except FileNotFoundError:
            return
        except PinLockError:  # torn while being written: custody was not touched yet
            staged.unlink()
            return
        secret = self._custody.load(paths.account_id)
        if secret is not None and hmac.compare_digest(_check(secret), pending.check):
            replace_durably(staged, paths.pin_lock)
        else:
            staged.unlink()

    def _read(self, paths: AccountPaths) -> _PinFile:
        try:
            return _PinFile.decode(paths.pin_lock.read_bytes())
        except FileNotFoundError:
            raise PinLockError("no PIN is set for this account") from None

    def _write(self, paths: AccountPaths, state: _PinFile) -> None:
        staged = paths.staged(paths.pin_lock)
        write_durably(staged, state.encode())
        replace_durably(staged, paths.pin_lock)

    def _wipe(self, paths: AccountPaths) -> PinAttemptsExhaustedError:
        self._before_wipe(paths.account_id)
        return PinAttemptsExhaustedError(wipe_account(paths, self._custody))
