"""Where a message has got to. A status only moves forward: a late "delivered" receipt
never undoes "read", and a resent "sent" never undoes "acknowledged"."""

from __future__ import annotations

from enum import IntEnum

from storage.database import Database


class MessageStatus(IntEnum):
    PENDING = 0  # in the outbox, not yet accepted by the relay
    SENT = 1  # the relay stored it durably
    DELIVERED = 2  # on a recipient's device (for a received message: on this one)
    READ = 3
    ACKNOWLEDGED = 4  # an urgent message's recipient confirmed it


def advance(db: Database, message_id: int, status: MessageStatus) -> bool:
    """Move the message forward to ``status``; False if it was already there or beyond."""
    cursor = db.execute(
        "UPDATE messages SET status = ?1 WHERE id = ?2 AND status < ?1", (status, message_id)
    )
    return cursor.rowcount > 0
