"""Receipts: who has received, read or acknowledged a message, and when.

Receipts travel back as ordinary encrypted messages; each one is kept per recipient (an urgent
message shows who has acknowledged it and who has not) and moves the message's own status
forward to the furthest any recipient has reached.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from storage.database import Database
from storage.messages import MessageRef
from storage.status import MessageStatus

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
        return self._record(refs, receipt, " AND m.room_id = ? AND m.sender_user = ?",
                            (room_id, sender_user))

    def _record(
        self, refs: list[MessageRef], receipt: Receipt, condition: str, params: tuple[str, ...]
    ) -> list[MessageRef]:
        """A receipt covers a burst of messages (up to hundreds): three statements for all of
        them, not two per message. CROSS JOIN keeps the refs as the outer loop, so that each
        is one lookup in the (sender device, id) index: with a plain JOIN, SQLite's planner
        reads every cached message instead."""
        if receipt.status not in RECEIPT_STATUSES:
            raise ValueError(f"{receipt.status.name} is not a receipt")
        wanted = json.dumps([[ref.sender_device, ref.client_id] for ref in refs])
        with self._db.transaction():
            found = {
                row[0]: MessageRef(row[1], row[2])
                for row in self._db.execute(
                    "SELECT m.id, m.sender_device, m.client_id FROM json_each(?) j"
                    " CROSS JOIN messages m ON m.sender_device = j.value ->> 0"
                    f" AND m.client_id = j.value ->> 1{condition}",
                    (wanted, *params),
                )
            }
            if not found:
                return []
            new = [row[0] for row in self._db.execute(
                "INSERT INTO receipts (message_id, user_id, status, at)"
                " SELECT value, ?, ?, ? FROM json_each(?) WHERE true"
                " ON CONFLICT DO NOTHING RETURNING message_id",
                (receipt.user_id, receipt.status, receipt.at, json.dumps(list(found))),
            )]
            self._db.execute(
                "UPDATE messages SET status = ?1"
                " WHERE id IN (SELECT value FROM json_each(?2)) AND status < ?1",
                (receipt.status, json.dumps(new)),
            )
        recorded = {found[message_id] for message_id in new}
        return [ref for ref in dict.fromkeys(refs) if ref in recorded]

    def of_message(self, ref: MessageRef) -> list[Receipt]:
        rows = self._db.execute(
            "SELECT r.user_id, r.status, r.at FROM receipts r JOIN messages m"
            " ON m.id = r.message_id WHERE m.sender_device = ? AND m.client_id = ?"
            " ORDER BY r.at, r.user_id",
            (ref.sender_device, ref.client_id),
        )
        return [Receipt(user, MessageStatus(status), at) for user, status, at in rows]
