"""Unlock PIN on top of custody: right and wrong PINs, a counter that survives, wipe after N."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest
from nacl.pwhash import argon2id

import storage.custody_pin as custody_pin
from storage.custody import MemoryCustody
from storage.custody_accounts import AccountDirectory
from storage.custody_pin import (
    PinAttemptsExhaustedError,
    PinLock,
    PinLockError,
    WrongPinError,
)

KEY = bytes(range(7, 39))
FAST = {"ops": argon2id.OPSLIMIT_MIN, "mem": argon2id.MEMLIMIT_MIN, "allow_weak": True}


@pytest.fixture
def directory(tmp_path: Path) -> AccountDirectory:
    return AccountDirectory(tmp_path / "accounts")


@pytest.fixture
def custody() -> MemoryCustody:
    custody = MemoryCustody()
    custody.store("u_a", KEY)
    return custody


def lock(custody: MemoryCustody, directory: AccountDirectory, **kwargs: object) -> PinLock:
    """A fresh PinLock object, as after an app restart."""
    return PinLock(custody, directory, **{**FAST, **kwargs})  # type: ignore[arg-type]


def make_account_data(directory: AccountDirectory) -> None:
    paths = directory.create("u_a")
    paths.database.write_bytes(b"ciphertext")
    paths.database_sidecars[0].write_bytes(b"wal")
    paths.documents.mkdir()
    (paths.documents / "doc1").write_bytes(b"encrypted document")


def test_right_pin_unlocks_and_custody_alone_no_longer_holds_the_key(
    custody: MemoryCustody, directory: AccountDirectory
) -> None:
    pins = lock(custody, directory)
    assert not pins.is_enabled("u_a")
    pins.enable("u_a", "4821")
    assert pins.is_enabled("u_a")
    secret = custody.load("u_a")
    assert secret is not None and secret != KEY
    data = directory.paths("u_a").pin_lock.read_bytes()
    for form in (KEY, KEY.hex().encode(), base64.b64encode(KEY), secret):
        assert form not in data
    assert lock(custody, directory).unlock("u_a", "4821") == KEY
    assert [p.name for p in directory.paths("u_a").root.iterdir()] == ["pin.lock"]


def test_wrong_pins_are_counted_across_restarts_and_reset_by_the_right_one(
    custody: MemoryCustody, directory: AccountDirectory
) -> None:
    lock(custody, directory).enable("u_a", "4821")
    for remaining in (9, 8, 7):
        with pytest.raises(WrongPinError) as caught:
            lock(custody, directory).unlock("u_a", "0000")  # a new object each time
        assert caught.value.remaining == remaining
        assert f"{remaining} attempt(s) left" in str(caught.value)
    assert lock(custody, directory).failures("u_a") == 3
    assert lock(custody, directory).unlock("u_a", "4821") == KEY
    assert lock(custody, directory).failures("u_a") == 0


def test_a_wrong_pin_is_counted_before_it_is_tried(
    custody: MemoryCustody, directory: AccountDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killing the app while the PIN is being checked must not give a free guess."""
    lock(custody, directory).enable("u_a", "4821")

    def killed(*_args: object, **_kwargs: object) -> bytes:
        raise KeyboardInterrupt  # the process dies mid-Argon2

    monkeypatch.setattr(custody_pin, "unwrap_key", killed)
    with pytest.raises(KeyboardInterrupt):
        lock(custody, directory).unlock("u_a", "1234")
    monkeypatch.undo()
    assert lock(custody, directory).failures("u_a") == 1


def test_too_many_wrong_pins_wipe_the_account(
    custody: MemoryCustody, directory: AccountDirectory
) -> None:
    make_account_data(directory)
    lock(custody, directory).enable("u_a", "4821")
    closed: list[str] = []
    pins = lock(custody, directory, max_attempts=3, before_wipe=closed.append)
    for _ in range(2):
        with pytest.raises(WrongPinError):
            pins.unlock("u_a", "1111")
    assert closed == []
    with pytest.raises(PinAttemptsExhaustedError) as caught:
        pins.unlock("u_a", "2222")
    assert closed == ["u_a"]
    report = caught.value.report
    assert report.complete
    paths = directory.paths("u_a")
    assert str(paths.database) in report.deleted
    assert str(paths.pin_lock) in report.deleted
    assert "key in memory (tests only)" in report.deleted
    assert not paths.root.exists()
    assert custody.load("u_a") is None
    assert directory.accounts() == []


def test_a_wipe_that_was_due_happens_on_the_next_attempt(
    custody: MemoryCustody, directory: AccountDirectory
) -> None:
    """Counted failures at the limit (a crash before the wipe, or a lowered limit) wipe
    before any PIN is tried, the right one included."""
    lock(custody, directory).enable("u_a", "4821")
    for _ in range(3):
        with pytest.raises(WrongPinError):
            lock(custody, directory).unlock("u_a", "0000")
    with pytest.raises(PinAttemptsExhaustedError):
        lock(custody, directory, max_attempts=3).unlock("u_a", "4821")
    assert custody.load("u_a") is None


def test_deleting_the_pin_file_to_reset_the_counter_loses_the_data(
    custody: MemoryCustody, directory: AccountDirectory
) -> None:
    lock(custody, directory).enable("u_a", "4821")
    directory.paths("u_a").pin_lock.unlink()
    pins = lock(custody, directory)
    assert not pins.is_enabled("u_a")
    assert custody.load("u_a") != KEY  # what is left in custody does not open the database
    with pytest.raises(PinLockError, match="no PIN is set"):
        pins.unlock("u_a", "4821")


def test_change_and_disable(custody: MemoryCustody, directory: AccountDirectory) -> None:
    pins = lock(custody, directory)
    pins.enable("u_a", "4821")
    with pytest.raises(PinLockError, match="already set"):
        pins.enable("u_a", "9999")
    pins.change("u_a", "4821", "135790")
    with pytest.raises(WrongPinError):
        pins.unlock("u_a", "4821")
    assert pins.unlock("u_a", "135790") == KEY
    pins.disable("u_a", "135790")
    assert not pins.is_enabled("u_a")
    assert custody.load("u_a") == KEY
    assert list(directory.paths("u_a").root.iterdir()) == []


def test_pin_policy_and_misuse(custody: MemoryCustody, directory: AccountDirectory) -> None:
    pins = lock(custody, directory)
    with pytest.raises(ValueError, match="at least 4"):
        pins.enable("u_a", "123")
    assert custody.load("u_a") == KEY  # nothing changed
    with pytest.raises(PinLockError, match="no database key"):
        pins.enable("u_nobody", "4821")
    with pytest.raises(PinLockError, match="no PIN is set"):
        pins.unlock("u_a", "4821")
    with pytest.raises(ValueError):
        PinLock(custody, directory, max_attempts=0)


def test_a_foreign_secret_in_custody_is_not_counted_as_a_wrong_pin(
    custody: MemoryCustody, directory: AccountDirectory
) -> None:
    pins = lock(custody, directory)
    pins.enable("u_a", "4821")
    custody.store("u_a", bytes(32))
    with pytest.raises(PinLockError, match="does not match"):
        pins.unlock("u_a", "4821")
    assert pins.failures("u_a") == 0


def test_pin_is_normalised_so_keyboards_agree(
    custody: MemoryCustody, directory: AccountDirectory
) -> None:
    pins = lock(custody, directory)
    pins.enable("u_a", "caf\u00e9-12")  # precomposed é
    assert pins.unlock("u_a", "cafe\u0301-12") == KEY  # e + combining acute


class CrashAfterStore(MemoryCustody):
    """Custody whose process dies right after a store succeeded."""

    def store(self, account_id: str, key: bytes) -> None:
        super().store(account_id, key)
        raise KeyboardInterrupt


class CrashBeforeStore(MemoryCustody):
    def store(self, account_id: str, key: bytes) -> None:
        raise KeyboardInterrupt


@pytest.mark.parametrize("crashing", [CrashAfterStore, CrashBeforeStore])
def test_a_crash_while_setting_the_pin_leaves_a_usable_account(
    directory: AccountDirectory, crashing: type[MemoryCustody]
) -> None:
    custody = crashing()
    MemoryCustody.store(custody, "u_a", KEY)
    with pytest.raises(KeyboardInterrupt):
        lock(custody, directory).enable("u_a", "4821")
    assert directory.paths("u_a").staged(directory.paths("u_a").pin_lock).exists()
    pins = lock(custody, directory)
    if crashing is CrashAfterStore:  # custody holds the new secret: the PIN is on
        assert pins.is_enabled("u_a")
        assert pins.unlock("u_a", "4821") == KEY
    else:  # custody still holds the key: as if the PIN had never been set
        assert not pins.is_enabled("u_a")
        assert custody.load("u_a") == KEY
    assert not directory.paths("u_a").staged(directory.paths("u_a").pin_lock).exists()


@pytest.mark.parametrize("crash_after_store", [True, False])
def test_a_crash_while_removing_the_pin_leaves_a_usable_account(
    directory: AccountDirectory, crash_after_store: bool
) -> None:
    custody = MemoryCustody()
    custody.store("u_a", KEY)
    lock(custody, directory).enable("u_a", "4821")
    custody.__class__ = CrashAfterStore if crash_after_store else CrashBeforeStore
    with pytest.raises(KeyboardInterrupt):
        lock(custody, directory).disable("u_a", "4821")
    custody.__class__ = MemoryCustody
    pins = lock(custody, directory)
    if crash_after_store:  # custody got the key back: the PIN is off
        assert not pins.is_enabled("u_a")
        assert custody.load("u_a") == KEY
    else:  # custody still holds the secret: the PIN is still on
        assert pins.unlock("u_a", "4821") == KEY


def test_a_torn_staged_file_is_discarded(
    custody: MemoryCustody, directory: AccountDirectory
) -> None:
    pins = lock(custody, directory)
    pins.enable("u_a", "4821")
    paths = directory.paths("u_a")
    paths.staged(paths.pin_lock).write_bytes(b"LPL1\x00")
    assert pins.unlock("u_a", "4821") == KEY
    assert not paths.staged(paths.pin_lock).exists()


def test_damaged_pin_file_is_a_typed_error(
    custody: MemoryCustody, directory: AccountDirectory
) -> None:
    pins = lock(custody, directory)
    pins.enable("u_a", "4821")
    path = directory.paths("u_a").pin_lock
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(PinLockError, match="damaged"):
        pins.unlock("u_a", "4821")


def test_default_pin_wrapping_is_moderate_argon2(
    custody: MemoryCustody, directory: AccountDirectory
) -> None:
    PinLock(custody, directory).enable("u_a", "4821")
    blob = directory.paths("u_a").pin_lock.read_bytes()[24:]  # after magic, counter, check
    assert struct.unpack(">II", blob[5:13]) == (
        argon2id.OPSLIMIT_MODERATE,
        argon2id.MEMLIMIT_MODERATE,
    )
