"""Several accounts on one device: one directory, one database and one key per account.

Shared ward phones and desktops carry several people's accounts. Each account gets its own
directory under a base (platformdirs' user data dir by default), holding its SQLCipher
database, document cache and key files; its key lives in custody under the same account id.
Exactly one account's database is open at a time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import platformdirs

# The relay's id alphabet (protocol.rest.Id): safe as a directory name on every platform.
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_account_id(account_id: str) -> str:
    """Refuse ids that could escape the base directory or mean different things on disk."""
    if not isinstance(account_id, str) or not _ACCOUNT_ID.fullmatch(account_id):
        raise ValueError(f"account id must match {_ACCOUNT_ID.pattern}: {account_id!r}")
    return account_id


@dataclass(frozen=True)
class AccountPaths:
    """Where one account's local data lives; the wipe deletes exactly these, then the root."""

    account_id: str
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "liaison.db"

    @property
    def database_sidecars(self) -> tuple[Path, ...]:
        """SQLite's WAL, shared-memory index and rollback journal beside the database."""
        return tuple(self.root / f"liaison.db{suffix}" for suffix in ("-wal", "-shm", "-journal"))

    @property
    def documents(self) -> Path:
        """The encrypted document cache (secretstream files)."""
        return self.root / "documents"

    @property
    def wrapped_key(self) -> Path:
        """The database key wrapped under a passphrase (custody_passphrase)."""
        return self.root / "key.wrapped"

    @property
    def pin_lock(self) -> Path:
        """The key wrapped under the unlock PIN, with the wrong-PIN counter (custody_pin)."""
        return self.root / "pin.lock"

    @staticmethod
    def staged(path: Path) -> Path:
        """The staging file that ``path`` is rewritten through (see custody.write_durably)."""
        return path.with_name(path.name + ".pending")

    def key_files(self) -> tuple[Path, ...]:
        """Every file that holds key material, staged copies included."""
        files = (self.wrapped_key, self.pin_lock)
        return files + tuple(self.staged(f) for f in files)


class AccountDirectory:
    """Computes, creates and lists account directories under one base directory."""

    def __init__(self, base: Path | None = None) -> None:
        if base is None:
            base = platformdirs.user_data_path("liaison", appauthor=False) / "accounts"
        self.base = base

    def paths(self, account_id: str) -> AccountPaths:
        return AccountPaths(check_account_id(account_id), self.base / account_id)

    def create(self, account_id: str) -> AccountPaths:
        """The account's paths, its directory made (owner-only) if missing."""
        paths = self.paths(account_id)
        paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return paths

    def accounts(self) -> list[str]:
        """Ids of the accounts that have a directory here, sorted."""
        if not self.base.is_dir():
            return []
        return sorted(
            p.name for p in self.base.iterdir() if p.is_dir() and _ACCOUNT_ID.fullmatch(p.name)
        )


class Closeable(Protocol):
    def close(self) -> None: ...


D = TypeVar("D", bound=Closeable)


class AccountSwitcher(Generic[D]):
    """Keeps at most one account's database open, so one person's data is shown at a time.

    Opening is delegated to ``open_database(path, key)`` (storage's SQLCipher open) so this
    module does not depend on the database code.
    """

    def __init__(
        self, directory: AccountDirectory, open_database: Callable[[Path, bytes], D]
    ) -> None:
        self._directory = directory
        self._open_database = open_database
        self._current: tuple[str, D] | None = None

    @property
    def current_account(self) -> str | None:
        return self._current[0] if self._current else None

    def switch(self, account_id: str, key: bytes) -> D:
        """Close the open account's database (if another), then open this account's."""
        if self._current and self._current[0] == account_id:
            return self._current[1]
        self.close()
        database = self._open_database(self._directory.create(account_id).database, key)
        self._current = (account_id, database)
        return database

    def release(self, account_id: str) -> None:
        """Close the database if it is this account's: a wipe must not race open files."""
        if self._current and self._current[0] == account_id:
            self.close()

    def close(self) -> None:
        current, self._current = self._current, None
        if current:
            current[1].close()
