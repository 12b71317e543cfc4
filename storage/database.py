"""One SQLCipher database file, opened with a raw 256-bit key.

The key is used as is (``x'…'`` raw-key mode: no passphrase KDF, since it is already random);
SQLCipher's per-file salt and per-page HMAC still apply. The key is proven right on a read-only
connection before anything may write, so a wrong key leaves the database and its WAL
byte-for-byte unchanged, even the hot WAL of a crash (only SQLite's -shm index may be rebuilt).

Thread model: a ``Database`` is one connection, owned by the thread that opened it (the
engine's storage thread); sqlite's same-thread check stays on so misuse fails loudly instead
of interleaving transactions.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlcipher3

from storage.errors import DatabaseCorruptError, WrongKeyError

KEY_SIZE = 32
PAGE_SIZE = 4096  # SQLCipher 4's default page size: every database file is a multiple of it
_PLAIN_SQLITE_MAGIC = b"SQLite format 3\x00"
_SQLITE_NOTADB = 26

Params = Sequence[Any] | dict[str, Any]


def apply_pragmas(connection: sqlcipher3.Connection) -> None:
    """Per-connection settings: WAL, full durability, a 64 MiB page cache, foreign keys.

    ``synchronous = FULL``: the engine acknowledges a message to the relay (which then drops
    it) only after committing it, so a commit must survive power loss, not just a crash.
    ``secure_delete`` zeroes freed pages, so an erased (recalled) body is not left in free
    space; ``temp_store = MEMORY`` keeps sort and index temporaries off the disk.
    """
    (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode != "wal":
        raise DatabaseCorruptError(f"cannot switch the database to WAL (got {mode!r})")
    for pragma in (
        "synchronous = FULL",
        "cache_size = -65536",
        "foreign_keys = ON",
        "busy_timeout = 5000",
        "secure_delete = ON",
        "temp_store = MEMORY",
    ):
        connection.execute(f"PRAGMA {pragma}")


def _check_file(path: Path) -> None:
    """Refuse files that cannot be a SQLCipher database before handing them to SQLCipher."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(len(_PLAIN_SQLITE_MAGIC))
    if head == _PLAIN_SQLITE_MAGIC:
        raise DatabaseCorruptError(f"{path} is an unencrypted SQLite database")
    if size % PAGE_SIZE:
        raise DatabaseCorruptError(f"{path} is not a database (size {size})")


def _unlock(connection: sqlcipher3.Connection, key: bytes) -> None:
    """Give SQLCipher the key and prove it right by reading the schema, or raise."""
    connection.execute("PRAGMA cipher_log_level = NONE")  # before the key: nothing is logged
    connection.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_NOTADB:
            raise WrongKeyError("the key does not open this database") from None
        raise DatabaseCorruptError(str(exc)) from exc


def _prove_key(path: Path, key: bytes) -> None:
    """Try the key on a read-only connection first.

    A read-write connection that fails would still, as the file's last connection, checkpoint
    a WAL left by a crash into the main file and delete it on closing: the data would survive
    (frames are copied as they are) but the files would change under a wrong key.
    """
    connection = sqlcipher3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        _unlock(connection, key)
    finally:
        connection.close()


class Database:
    """An open, unlocked, configured SQLCipher connection with explicit transactions."""

    def __init__(self, connection: sqlcipher3.Connection, path: Path) -> None:
        """Wrap a connection already unlocked and configured (use ``Database.open``)."""
        self._connection = connection
        self._path = path
        self._depth = 0
        self.lazy_commits = 0  # commits made without their own fsync, ever (compare, not reset)
        self._lazy = False  # the connection is at synchronous = NORMAL (see ``transaction``)
        self._wal: int | None = None  # a descriptor of the write-ahead log, for ``sync``
        self._wal_lock = threading.Lock()
        self.rollbacks = 0  # rollbacks so far, for caches of rows a rollback may have undone

    @classmethod
    def open(cls, path: Path, key: bytes, *, create: bool = False) -> Database:
        """Open (or, with ``create``, create) the database at ``path`` under ``key``.

        Raises WrongKeyError, DatabaseCorruptError, or FileNotFoundError when the file is
        missing and ``create`` is false (a missing file with a known key is not a first run).
        """
        if len(key) != KEY_SIZE:
            raise ValueError(f"database key must be {KEY_SIZE} bytes")
        if path.exists():
            _check_file(path)
            _prove_key(path, key)
        elif not create:
            raise FileNotFoundError(path)
        connection = sqlcipher3.connect(str(path), isolation_level=None)
        try:
            _unlock(connection, key)
            apply_pragmas(connection)
        except BaseException:
            connection.close()
            raise
        return cls(connection, path)

    @property
    def path(self) -> Path:
        return self._path

    def execute(self, sql: str, params: Params = ()) -> sqlcipher3.Cursor:
        if self._lazy and not self._depth:  # a statement of its own commits durably
            self._synchronous(lazy=False)
        return self._connection.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Params]) -> sqlcipher3.Cursor:
        if self._lazy and not self._depth:
            self._synchronous(lazy=False)
        return self._connection.executemany(sql, rows)

    def _synchronous(self, *, lazy: bool) -> None:
        """Switch between NORMAL and FULL only when it changes: lazy commits come in runs."""
        if lazy != self._lazy:
            self._connection.execute(f"PRAGMA synchronous = {'NORMAL' if lazy else 'FULL'}")
            self._lazy = lazy

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[None]:
        """All-or-nothing: BEGIN IMMEDIATE … COMMIT, or a savepoint when already inside one.

        Nesting lets a repository method be atomic on its own and still join the engine's
        larger transaction (say, a decrypted message together with the group state that
        decrypted it).

        A transaction that is not ``durable`` commits without its own fsync (synchronous
        NORMAL, still atomic): power lost before the next durable commit may undo it. Only for
        writes whose loss is harmless, such as dropping outbox rows the relay has accepted
        (a resend is deduplicated). Inside another transaction it is as durable as that one.
        The connection stays at NORMAL through a run of such transactions, and is back at FULL
        before the next durable one or any statement outside a transaction.
        """
        depth = self._depth
        if depth == 0:
            self._synchronous(lazy=not durable)
            if not durable:
                self.lazy_commits += 1
        savepoint = f"sp{depth}"
        self._connection.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {savepoint}")
        self._depth = depth + 1
        try:
            yield
            self._connection.execute("COMMIT" if depth == 0 else f"RELEASE {savepoint}")
        except BaseException:
            self._rollback(savepoint if depth else None)
            raise
        finally:
            self._depth = depth

    def _rollback(self, savepoint: str | None) -> None:
        self.rollbacks += 1
        # Some errors (disk full, I/O) make SQLite roll back by itself: nothing left to undo.
        if not self._connection.in_transaction:
            return
        if savepoint is None:
            self._connection.execute("ROLLBACK")
        else:
            self._connection.execute(f"ROLLBACK TO {savepoint}")
            self._connection.execute(f"RELEASE {savepoint}")

    def checkpoint(self) -> None:
        """Fold the WAL back into the main file and truncate it (before a copy or a wipe)."""
        self.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def integrity_problems(self) -> list[str]:
        """Every page's HMAC, then the b-trees' structure; an empty list means healthy."""
        problems = [row[0] for row in self.execute("PRAGMA cipher_integrity_check")]
        if problems:  # the structural check would only stumble on the same pages
            return problems
        try:
            rows = self.execute("PRAGMA integrity_check").fetchall()
        except sqlcipher3.DatabaseError as exc:
            return [str(exc)]
        return [row[0] for row in rows if row[0] != "ok"]

    def sync(self) -> None:
        """Make every commit so far durable, those without their own fsync included: one
        fsync of the write-ahead log, where their frames wait (a checkpoint syncs what it
        moves out of it). It does not touch the connection, so it may run in another thread
        while commits go on: the engine's group commit makes one fsync serve every message
        sealed meanwhile."""
        wal = self._path.with_name(self._path.name + "-wal")
        with self._wal_lock:
            try:
                if self._wal is None or os.fstat(self._wal).st_ino != os.stat(wal).st_ino:
                    self._close_wal()
                    # Kept open: closing a descriptor drops the process's POSIX locks on the
                    # file, which SQLite would not know of.
                    self._wal = os.open(wal, os.O_RDWR)
            except FileNotFoundError:
                return  # no log: everything is in the main file, synced by the checkpoint
            os.fsync(self._wal)

    def _close_wal(self) -> None:
        if self._wal is not None:
            os.close(self._wal)
            self._wal = None

    def close(self) -> None:
        self._connection.close()
        with self._wal_lock:
            self._close_wal()
