"""Receipts: who has received, read or acknowledged a message, and when.

Receipts travel back as ordinary encrypted messages; each one is kept per recipient (an urgent
message shows who has acknowledged it and who has not) and moves the message's own status
forward to the furthest any recipient has reached.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database
from storage.messages import MessageRef, MessageStore
from storage.status import MessageStatus, advance

RECEIPT_STATUSES = (MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.ACKNOWLEDGED)


@dataclass(frozen=True, slots=True)
class Receipt:
    user_id: str
    status: MessageStatus
    at: float


class ReceiptStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._messages = MessageStore(db)

    def add(self, ref: MessageRef, receipt: Receipt) -> bool:
        """Record ``receipt``; False for an unknown message or a receipt already recorded."""
        if receipt.status not in RECEIPT_STATUSES:
            raise ValueError(f"{receipt.status.name} is not a receipt")
        with self._db.transaction():
            message_id = self._messages.id_of(ref)
            if message_id is None:
                return False
            added = self._db.execute(
                "INSERT INTO receipts (message_id, user_id, status, at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (message_id, receipt.user_id, receipt.status, receipt.at),
            ).rowcount
            advance(self._db, message_id, receipt.status)
        return added > 0

    def of_message(self, ref: MessageRef) -> list[Receipt]:
        rows = self._db.execute(
            "SELECT r.user_id, r.status, r.at FROM receipts r JOIN messages m"
            " ON m.id = r.message_id WHERE m.sender_device = ? AND m.client_id = ?"
            " ORDER BY r.at, r.user_id",
            (ref.sender_device, ref.client_id),
        )
        return [Receipt(user, MessageStatus(status), at) for user, status, at in rows]
