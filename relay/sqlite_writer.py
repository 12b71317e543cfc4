"""The hot path on SQLite: a whole batch of messages and acknowledgements in one trip to
a dedicated database thread (BEGIN IMMEDIATE, four executemany, COMMIT, fsync).

Through the async driver every statement is a thread hop of its own; at thousands of
messages a second those hops, not SQLite, were the cost.

The commit and its fsync are two steps: the connection commits without syncing (WAL at
synchronous NORMAL, still atomic, and safe from a crash of the relay's process), then this
thread syncs the write-ahead log itself when the relay is configured ``FULL``. Between the
two, the writer's ``committed`` callback runs on the event loop: the relay pushes the batch to
the recipients while the disk syncs, and answers the senders only once it has.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

_INSERT_ENVELOPE = (
    "INSERT INTO envelopes (id, sender_device, client_id, group_id, kind, epoch, payload, "
    "created_at, expires_at) VALUES (:id, :sender_device, :client_id, :group_id, :kind, "
    ":epoch, :payload, :created_at, :expires_at)")
_INSERT_MAILBOX = "INSERT INTO mailbox (seq, device_id, envelope_id) VALUES (:seq, :device_id, " \
    ":envelope_id)"
_INSERT_AUDIT = (
    "INSERT INTO audit (seq, at, event, user_id, device_id, group_id, details, prev_hash, hash) "
    "VALUES (:seq, :at, :event, :user_id, :device_id, :group_id, :details, :prev_hash, :hash)")
_DELETE_ACKED = "DELETE FROM mailbox WHERE device_id = :d AND seq = :s"


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite+aiosqlite:///...`` URL, or None for other databases."""
    prefix = "sqlite+aiosqlite:///"
    return Path(url[len(prefix):]) if url.startswith(prefix) else None


class NotDurableError(OSError):
    """The batch committed, but syncing it to the disk failed: it may not survive a power
    cut. Its recipients may already have it; its senders must not be told it is stored."""


class SqliteWriter:
    def __init__(self, path: Path, synchronous: str) -> None:
        self.path = path
        self.synchronous = synchronous
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._wal: int | None = None  # a descriptor of the write-ahead log, to sync it

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # FULL's fsync is _sync_wal's
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._conn = conn
        return self._conn

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def senders_ids(
        self, senders: set[str]
    ) -> list[tuple[str, str, int | None, str, float]]:
        def query() -> list[tuple[str, str, int | None, str, float]]:
            marks = ",".join("?" * len(senders))
            return self._db().execute(
                "SELECT sender_device, client_id, epoch, kind, created_at FROM envelopes "
                f"WHERE client_id IS NOT NULL AND sender_device IN ({marks})",
                sorted(senders)).fetchall()

        return await self._call(query)

    async def flush(self, envelopes: list[dict[str, Any]], mailbox: list[dict[str, Any]],
                    audit: list[dict[str, Any]], acked: list[dict[str, Any]],
                    committed: Callable[[], None]) -> None:
        """Write the batch in one transaction; ``committed`` is called on the event loop as
        soon as it is committed, and this returns once it is also durable (NotDurableError
        when only the sync failed, any other error when nothing was written)."""
        loop = asyncio.get_running_loop()

        def write() -> None:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in ((_INSERT_ENVELOPE, envelopes), (_INSERT_MAILBOX, mailbox),
                                  (_INSERT_AUDIT, audit), (_DELETE_ACKED, acked)):
                    if rows:
                        db.executemany(sql, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            loop.call_soon_threadsafe(committed)  # before this call's own answer: in order
            if self.synchronous == "FULL" and (envelopes or mailbox or audit or acked):
                try:
                    self._sync_wal()
                except OSError as e:
                    raise NotDurableError(f"the batch committed but did not sync: {e}") from e

        await self._call(write)

    def _sync_wal(self) -> None:
        """One fsync of the write-ahead log, where commits wait until a checkpoint (which syncs
        what it moves into the main file). SQLite keeps that file while a connection is open,
        and this writer's stays open as long as the descriptor: one open for its lifetime."""
        if self._wal is None:
            try:
                self._wal = os.open(self.path.with_name(self.path.name + "-wal"), os.O_RDWR)
            except FileNotFoundError:
                return  # no log: everything is in the main file, synced by the checkpoint
        os.fsync(self._wal)

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._wal is not None:
                os.close(self._wal)
                self._wal = None

        await self._call(close)
        self._pool.shutdown()
