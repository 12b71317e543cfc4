"""The hot path on SQLite: a whole batch of messages and acknowledgements in one trip to
a dedicated database thread (BEGIN IMMEDIATE, four executemany, COMMIT).

Through the async driver every statement is a thread hop of its own; at thousands of
messages a second those hops, not SQLite, were the cost.
"""

from __future__ import annotations

import asyncio
import sqlite3
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


class SqliteWriter:
    def __init__(self, path: Path, synchronous: str) -> None:
        self.path = path
        self.synchronous = synchronous
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-sqlite")
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
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
                    audit: list[dict[str, Any]], acked: list[dict[str, Any]]) -> None:
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

        await self._call(write)

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._call(close)
        self._pool.shutdown()
