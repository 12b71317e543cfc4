"""Several accounts on one device: their paths, switching between them, and wiping one."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

from storage.custody import MemoryCustody
from storage.custody_accounts import AccountDirectory, AccountPaths, AccountSwitcher
from storage.custody_wipe import wipe_account

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


@pytest.fixture
def directory(tmp_path: Path) -> AccountDirectory:
    return AccountDirectory(tmp_path / "accounts")


# --- paths and listing -------------------------------------------------------------------


def test_each_account_has_its_own_directory_and_files(directory: AccountDirectory) -> None:
    a, b = directory.paths("u_A1"), directory.paths("u_b-2")
    assert a.root == directory.base / "u_A1"
    assert a.database == a.root / "liaison.db"
    assert [p.name for p in a.database_sidecars] == [
        "liaison.db-wal",
        "liaison.db-shm",
        "liaison.db-journal",
    ]
    assert a.documents == a.root / "documents"
    assert {a.wrapped_key.name, a.pin_lock.name} == {"key.wrapped", "pin.lock"}
    assert a.staged(a.pin_lock).name == "pin.lock.pending"
    assert set(a.key_files()) == {
        a.wrapped_key,
        a.pin_lock,
        a.staged(a.wrapped_key),
        a.staged(a.pin_lock),
    }
    assert a.root != b.root and a.database.parent != b.database.parent


@pytest.mark.parametrize("bad", ["", "..", ".", "../u_a", "a/b", "a\\b", "é", "a" * 65, "a b"])
def test_account_ids_that_could_escape_the_base_are_refused(
    directory: AccountDirectory, bad: str
) -> None:
    with pytest.raises(ValueError, match="account id"):
        directory.paths(bad)


def test_accounts_are_listed_once_created(directory: AccountDirectory) -> None:
    assert directory.accounts() == []  # base does not exist yet
    directory.create("u_b")
    paths = directory.create("u_a")
    assert paths.root.is_dir() and oct(paths.root.stat().st_mode & 0o777) == "0o700"
    (directory.base / "not an account").mkdir()
    (directory.base / "stray-file").write_bytes(b"")
    assert directory.accounts() == ["u_a", "u_b"]


def test_default_base_is_the_user_data_dir() -> None:
    base = AccountDirectory().base
    assert base == platformdirs.user_data_path("liaison", appauthor=False) / "accounts"


# --- switching ---------------------------------------------------------------------------


class FakeDatabase:
    def __init__(self, log: list[str], path: Path, key: bytes) -> None:
        self.log, self.path, self.key = log, path, key
        log.append(f"open {path.parent.name}")

    def close(self) -> None:
        self.log.append(f"close {self.path.parent.name}")


def test_switching_closes_one_account_before_opening_the_other(
    directory: AccountDirectory,
) -> None:
    log: list[str] = []
    switcher = AccountSwitcher(directory, lambda path, key: FakeDatabase(log, path, key))
    assert switcher.current_account is None
    a = switcher.switch("u_a", KEY_A)
    assert (a.path, a.key) == (directory.paths("u_a").database, KEY_A)
    assert switcher.switch("u_a", KEY_A) is a  # already open: not reopened
    b = switcher.switch("u_b", KEY_B)
    assert (b.path, b.key) == (directory.paths("u_b").database, KEY_B)
    assert switcher.current_account == "u_b"
    switcher.release("u_a")  # not the open one: nothing happens
    switcher.release("u_b")
    assert switcher.current_account is None
    switcher.close()
    assert log == ["open u_a", "close u_a", "open u_b", "close u_b"]


def test_a_failed_open_leaves_no_account_open(directory: AccountDirectory) -> None:
    log: list[str] = []

    def open_database(path: Path, key: bytes) -> FakeDatabase:
        if key != KEY_A:
            raise ValueError("wrong key")
        return FakeDatabase(log, path, key)

    switcher = AccountSwitcher(directory, open_database)
    switcher.switch("u_a", KEY_A)
    with pytest.raises(ValueError):
        switcher.switch("u_b", KEY_A[::-1])
    assert switcher.current_account is None
    assert log == ["open u_a", "close u_a"]


# --- wipe --------------------------------------------------------------------------------


def populate(paths: AccountPaths) -> None:
    paths.root.mkdir(parents=True)
    paths.database.write_bytes(b"db")
    wal, shm, _journal = paths.database_sidecars
    wal.write_bytes(b"wal")
    shm.write_bytes(b"shm")
    (paths.documents / "ab").mkdir(parents=True)
    (paths.documents / "ab" / "blob1").write_bytes(b"x")
    (paths.documents / "blob2").write_bytes(b"y")
    paths.wrapped_key.write_bytes(b"wrapped")
    paths.pin_lock.write_bytes(b"pin")
    (paths.root / "search-cache").mkdir()
    (paths.root / "search-cache" / "f").write_bytes(b"z")
    (paths.root / "stray.tmp").write_bytes(b"t")


def test_wipe_deletes_everything_and_says_what(directory: AccountDirectory) -> None:
    custody = MemoryCustody()
    custody.store("u_a", KEY_A)
    custody.store("u_b", KEY_B)
    paths, other = directory.paths("u_a"), directory.paths("u_b")
    populate(paths)
    populate(other)
    report = wipe_account(paths, custody)
    wal, shm, _journal = paths.database_sidecars
    assert report.account_id == "u_a"
    assert report.deleted == (
        "key in memory (tests only)",
        str(paths.wrapped_key),
        str(paths.pin_lock),
        str(paths.database),
        str(wal),
        str(shm),
        f"{paths.documents}/ (2 files)",
        f"{paths.root / 'search-cache'}/ (1 files)",
        str(paths.root / "stray.tmp"),
        f"{paths.root}/",
    )
    assert report.missing == () and report.failed == () and report.complete
    assert not paths.root.exists()
    assert custody.load("u_a") is None
    assert custody.load("u_b") == KEY_B  # the other account is untouched
    assert other.database.exists() and directory.accounts() == ["u_b"]
    assert str(report).startswith(
        f"account u_a: deleted key in memory (tests only), {paths.wrapped_key}, "
    )


def test_wipe_of_nothing_reports_what_did_not_exist(directory: AccountDirectory) -> None:
    paths = directory.paths("u_a")
    report = wipe_account(paths, MemoryCustody())
    wal, shm, _journal = paths.database_sidecars
    assert report.deleted == ()
    assert report.missing == (
        "key in memory (tests only)",
        str(paths.wrapped_key),
        str(paths.pin_lock),
        str(paths.database),
        str(wal),
        str(shm),
        f"{paths.documents}/",
    )
    assert report.complete
    assert "deleted nothing; did not exist: key in memory" in str(report)


def test_wipe_goes_on_when_one_part_fails(directory: AccountDirectory) -> None:
    class LockedCustody(MemoryCustody):
        description = "locked keyring"

        def delete(self, account_id: str) -> bool:
            raise RuntimeError("collection is locked")

    paths = directory.paths("u_a")
    populate(paths)
    report = wipe_account(paths, LockedCustody())
    assert report.failed == ("key in locked keyring: collection is locked",)
    assert not report.complete
    assert "COULD NOT DELETE: key in locked keyring" in str(report)
    assert str(paths.database) in report.deleted
    assert not paths.root.exists()


def test_wipe_leaves_staged_and_journal_files_out_of_the_missing_list(
    directory: AccountDirectory,
) -> None:
    paths = directory.paths("u_a")
    paths.root.mkdir(parents=True)
    paths.staged(paths.pin_lock).write_bytes(b"half-written")
    journal = paths.database_sidecars[2]
    journal.write_bytes(b"journal")
    report = wipe_account(paths, MemoryCustody())
    assert str(paths.staged(paths.pin_lock)) in report.deleted
    assert str(journal) in report.deleted
    assert not any(name.endswith((".pending", "-journal")) for name in report.missing)
