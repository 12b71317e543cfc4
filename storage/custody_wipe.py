"""Wiping one account's local data: sign-out, remote wipe, too many wrong PINs.

The key goes first: once custody has forgotten it (and the wrapped copies are gone), what
remains of the database is ciphertext nobody can open, even if deleting a file then fails
or flash storage keeps old blocks (overwriting in place proves nothing on SSDs and phones).
The files are deleted after, and the report says item by item what was deleted, what did
not exist and what could not be deleted, for the user and for the remote-wipe answer.
Close the account's database first: Windows cannot delete open files, and an open
connection could write a new WAL after the wipe.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from storage.custody import KeyCustody
from storage.custody_accounts import AccountPaths


@dataclass(frozen=True)
class WipeReport:
    """What one wipe did; ``complete`` is False when anything could not be deleted."""

    account_id: str
    deleted: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        parts = [f"account {self.account_id}: deleted {', '.join(self.deleted) or 'nothing'}"]
        if self.missing:
            parts.append(f"did not exist: {', '.join(self.missing)}")
        if self.failed:
            parts.append(f"COULD NOT DELETE: {'; '.join(self.failed)}")
        return "; ".join(parts)


class _Wipe:
    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.missing: list[str] = []
        self.failed: list[str] = []

    def key(self, custody: KeyCustody, account_id: str) -> None:
        label = f"key in {custody.description}"
        try:
            existed = custody.delete(account_id)
        except Exception as exc:  # a wipe goes on whatever one store says
            self.failed.append(f"{label}: {exc}")
            return
        (self.deleted if existed else self.missing).append(label)

    def file(self, path: Path, *, report_missing: bool = True) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            if report_missing:
                self.missing.append(str(path))
        except OSError as exc:
            self.failed.append(f"{path}: {exc}")
        else:
            self.deleted.append(str(path))

    def tree(self, path: Path) -> None:
        if not path.exists():
            self.missing.append(f"{path}/")
            return
        count = sum(1 for p in path.rglob("*") if not p.is_dir())
        errors: list[str] = []
        shutil.rmtree(path, onerror=lambda _f, p, info: errors.append(f"{p}: {info[1]}"))
        if errors:
            self.failed.extend(errors)
        else:
            self.deleted.append(f"{path}/ ({count} files)")

    def report(self, account_id: str) -> WipeReport:
        return WipeReport(account_id, tuple(self.deleted), tuple(self.missing), tuple(self.failed))


def wipe_account(paths: AccountPaths, custody: KeyCustody) -> WipeReport:
    """Delete the account's key from custody, its key files, database, WAL and documents."""
    wipe = _Wipe()
    wipe.key(custody, paths.account_id)
    for path in paths.key_files():
        wipe.file(path, report_missing=path in (paths.wrapped_key, paths.pin_lock))
    wipe.file(paths.database)
    wal, shm, journal = paths.database_sidecars
    wipe.file(wal)
    wipe.file(shm)
    wipe.file(journal, report_missing=False)  # exists only mid-transaction outside WAL mode
    wipe.tree(paths.documents)
    if paths.root.is_dir():
        for leftover in sorted(paths.root.iterdir()):  # anything else in the account's dir
            if leftover.is_dir() and not leftover.is_symlink():
                wipe.tree(leftover)
            else:
                wipe.file(leftover)
        try:
            paths.root.rmdir()
        except OSError as exc:
            wipe.failed.append(f"{paths.root}: {exc}")
        else:
            wipe.deleted.append(f"{paths.root}/")
    return wipe.report(paths.account_id)
