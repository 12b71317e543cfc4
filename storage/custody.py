"""Key custody: where the database key of one account is kept on this device.

The SQLCipher key is a random 32-byte key that must never touch the disk in clear. Where it
lives depends on the platform — the OS keyring (custody_keyring), a passphrase-wrapped file
on machines without one (custody_passphrase), the platform's secure storage on Android/iOS
(custody_secure_storage) — so the rest of the app sees one small interface, and an unlock
PIN (custody_pin) can sit on top of any of them.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path
from typing import Protocol

from storage.database import KEY_SIZE
from storage.errors import StorageError


class CustodyError(StorageError):
    """Base of every key-custody error, so the app can catch one type and show its message."""


class CustodyUnavailableError(CustodyError):
    """The key store could not be reached, was locked, or refused the operation."""


class KeyCustody(Protocol):
    """Keeps one secret key per account id; every implementation stores exactly 32 bytes."""

    @property
    def description(self) -> str:
        """Where the keys are kept, in words for messages and wipe reports."""
        ...

    def load(self, account_id: str) -> bytes | None:
        """The account's key, or None when it has none here."""
        ...

    def store(self, account_id: str, key: bytes) -> None:
        """Keep ``key`` for the account, replacing any previous one."""
        ...

    def delete(self, account_id: str) -> bool:
        """Forget the account's key; False when there was none."""
        ...


def check_key(key: bytes) -> bytes:
    """Refuse anything but a 32-byte key, so a caller's mix-up fails here, not at open time."""
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise ValueError(f"a custody key is exactly {KEY_SIZE} bytes")
    return key


def encode_key(key: bytes) -> str:
    """Text form for stores that keep strings (OS keyrings, Flet secure storage)."""
    return base64.b64encode(check_key(key)).decode("ascii")


def decode_key(value: str, where: str) -> bytes:
    """Inverse of ``encode_key``; a damaged entry is a CustodyError naming ``where``."""
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CustodyError(f"{where}: the stored key is corrupt") from exc
    if len(key) != KEY_SIZE:
        raise CustodyError(f"{where}: the stored key is corrupt")
    return key


class MemoryCustody:
    """Keys in a dict: unit tests only — nothing survives the process."""

    description = "memory (tests only)"

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}

    def load(self, account_id: str) -> bytes | None:
        return self._keys.get(account_id)

    def store(self, account_id: str, key: bytes) -> None:
        self._keys[account_id] = check_key(key)

    def delete(self, account_id: str) -> bool:
        return self._keys.pop(account_id, None) is not None


def load_or_create_key(custody: KeyCustody, account_id: str) -> bytes:
    """The account's database key, made at random and stored on first use."""
    key = custody.load(account_id)
    if key is None:
        key = secrets.token_bytes(KEY_SIZE)
        custody.store(account_id, key)
    return key


def write_durably(path: Path, data: bytes) -> None:
    """Write a small owner-only file and flush it to the disk before returning.

    Used for staging files that are then moved into place with ``replace_durably``, so a
    crash leaves either the old file or the new one, never half of one.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(staged: Path, target: Path) -> None:
    """Atomically move ``staged`` over ``target`` and make the rename itself durable."""
    os.replace(staged, target)
    if os.name == "posix":  # Windows cannot open a directory to fsync it
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
