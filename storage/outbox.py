"""Frames waiting to reach the relay, in the order they were written.

A row is removed only when the relay has accepted its client id, so a crash or a dropped
connection means a resend, which the relay recognises by that id. Frames are stored as the
opaque bytes the engine built (protocol JSON around MLS ciphertext): the outbox neither
parses nor re-encrypts them.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundEnvelope:
    client_id: str
    group_id: bytes
    frame: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEntry:
    envelope: OutboundEnvelope
    message_id: int | None  # the cached message this frame carries, if any
    attempts: int
    next_attempt_at: float
    last_error: str | None


class Outbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    def enqueue(
        self, envelope: OutboundEnvelope, *, now: float, message_id: int | None = None
    ) -> None:
        self._db.execute(
            "INSERT INTO outbox (client_id, group_id, frame, message_id, next_attempt_at,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (envelope.client_id, envelope.group_id, envelope.frame, message_id, now, now),
        )

    def due(self, now: float, *, limit: int = 100) -> list[OutboxEntry]:
        """Entries ready to (re)send, oldest first."""
        rows = self._db.execute(
            "SELECT client_id, group_id, frame, message_id, attempts, next_attempt_at,"
            " last_error FROM outbox WHERE next_attempt_at <= ? ORDER BY id LIMIT ?",
            (now, limit),
        )
        return [_entry(row) for row in rows]

    def get(self, client_id: str) -> OutboxEntry | None:
        row = self._db.execute(
            "SELECT client_id, group_id, frame, message_id, attempts, next_attempt_at,"
            " last_error FROM outbox WHERE client_id = ?",
            (client_id,),
        ).fetchone()
        return None if row is None else _entry(row)

    def refused(self, client_id: str, *, reason: str, at: float) -> int | None:
        """The relay refused the frame for good: drop it, and record the message it carried
        (whose id is returned) as failed, so that it is not resent forever."""
        with self._db.transaction():
            rows = self._db.execute(
                "DELETE FROM outbox WHERE client_id = ? RETURNING message_id", (client_id,)
            ).fetchall()
            message_id = rows[0][0] if rows else None
            if message_id is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO message_failures (message_id, reason, at)"
                    " VALUES (?, ?, ?)",
                    (message_id, reason, at),
                )
        return message_id

    def failure(self, message_id: int) -> str | None:
        """Why the relay refused the message, if it did."""
        row = self._db.execute(
            "SELECT reason FROM message_failures WHERE message_id = ?", (message_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def retry_later(self, client_id: str, *, at: float, error: str) -> None:
        self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
            " WHERE client_id = ?",
            (at, error, client_id),
        )

    def __len__(self) -> int:
        (count,) = self._db.execute("SELECT count(*) FROM outbox").fetchone()
        return int(count)


def _entry(row: tuple) -> OutboxEntry:
    c, g, f, m, a, n, e = row
    return OutboxEntry(
        envelope=OutboundEnvelope(client_id=c, group_id=g, frame=f),
        message_id=m, attempts=a, next_attempt_at=n, last_error=e,
    )
