"""Receipts: who has received, read or acknowledged a message, and when.

Receipts travel back as ordinary encrypted messages; each one is kept per recipient (an urgent
message shows who has acknowledged it and who has not) and moves the message's own status
forward to the furthest any recipient has reached.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database
from storage.messages import MessageRef
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

    def add(self, ref: MessageRef, receipt: Receipt) -> bool:
        """Record ``receipt``; False for an unknown message or a receipt already recorded."""
        return bool(self._record([ref], receipt, "", ()))

    def add_to_own(
        self, refs: list[MessageRef], receipt: Receipt, *, room_id: str, sender_user: str
    ) -> list[MessageRef]:
        """Record ``receipt`` for those of ``refs`` that ``sender_user`` sent in ``room_id``
        (a receipt must not move another room's or another sender's message); the refs it
        was new for."""
        return self._record(refs, receipt, " AND room_id = ? AND sender_user = ?",
                            (room_id, sender_user))

    def _record(
        self, refs: list[MessageRef], receipt: Receipt, condition: str, params: tuple[str, ...]
    ) -> list[MessageRef]:
        if receipt.status not in RECEIPT_STATUSES:
            raise ValueError(f"{receipt.status.name} is not a receipt")
        recorded = []
        with self._db.transaction():
            for ref in refs:
                row = self._db.execute(
                    "INSERT INTO receipts (message_id, user_id, status, at)"
                    " SELECT id, ?, ?, ? FROM messages WHERE sender_device = ? AND client_id = ?"
                    f"{condition} ON CONFLICT DO NOTHING RETURNING message_id",
                    (receipt.user_id, receipt.status, receipt.at, ref.sender_device,
                     ref.client_id, *params),
                ).fetchone()
                if row is not None:
                    advance(self._db, row[0], receipt.status)
                    recorded.append(ref)
        return recorded

    def of_message(self, ref: MessageRef) -> list[Receipt]:
        rows = self._db.execute(
            "SELECT r.user_id, r.status, r.at FROM receipts r JOIN messages m"
            " ON m.id = r.message_id WHERE m.sender_device = ? AND m.client_id = ?"
            " ORDER BY r.at, r.user_id",
            (ref.sender_device, ref.client_id),
        )
        return [Receipt(user, MessageStatus(status), at) for user, status, at in rows]
