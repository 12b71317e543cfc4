"""Rooms' history in bulk: what one device exports for a device of the same user just linked,
and what that device imports, in one transaction.

Each message keeps what makes it the same message everywhere (sender device and client id),
so importing twice, or alongside live delivery of the same message, stores it once. Edits keep
their superseded texts (with the edit's own ids, by which redelivered edits deduplicate) and a
recalled message stays a bodiless tombstone; receipts come along so that an urgent message
still shows who acknowledged it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields

from storage.attachments import AttachmentStore
from storage.database import Database
from storage.messages import MessageRef, MessageStore, NewMessage
from storage.receipts import Receipt
from storage.status import MessageStatus

_ALL = 2**62  # "every message of the room" for MessageStore.latest
_NEW_FIELDS = tuple(f.name for f in fields(NewMessage))


@dataclass(frozen=True, slots=True)
class EditedVersion:
    """A text a message showed before the edit ``edit`` replaced it."""

    edit: MessageRef
    body: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    message: NewMessage
    edited_at: float | None = None
    recalled_at: float | None = None
    versions: tuple[EditedVersion, ...] = ()
    receipts: tuple[Receipt, ...] = ()


class HistoryStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._messages = MessageStore(db)
        self._attachments = AttachmentStore(db)

    def export(self, room_ids: Sequence[str]) -> list[HistoryEntry]:
        """Every message of these rooms, oldest first per room, with edits and receipts."""
        rooms = json.dumps(list(room_ids))
        versions: dict[tuple[str, str], list[EditedVersion]] = {}
        for device, client, edit_device, edit_client, body, at in self._db.execute(
            "SELECT m.sender_device, m.client_id, v.edit_device, v.edit_client, v.body, v.at"
            " FROM message_versions v JOIN messages m ON m.id = v.message_id"
            " WHERE m.room_id IN (SELECT value FROM json_each(?)) ORDER BY v.at, v.id",
            (rooms,),
        ):
            versions.setdefault((device, client), []).append(
                EditedVersion(MessageRef(edit_device, edit_client), body, at)
            )
        receipts: dict[tuple[str, str], list[Receipt]] = {}
        for device, client, user, status, at in self._db.execute(
            "SELECT m.sender_device, m.client_id, r.user_id, r.status, r.at"
            " FROM receipts r JOIN messages m ON m.id = r.message_id"
            " WHERE m.room_id IN (SELECT value FROM json_each(?)) ORDER BY r.at, r.user_id",
            (rooms,),
        ):
            receipts.setdefault((device, client), []).append(
                Receipt(user, MessageStatus(status), at)
            )
        entries = []
        for room_id in room_ids:
            for m in self._messages.latest(room_id, limit=_ALL):
                key = (m.ref.sender_device, m.ref.client_id)
                entries.append(HistoryEntry(
                    message=NewMessage(**{f: getattr(m, f) for f in _NEW_FIELDS}),
                    edited_at=m.edited_at,
                    recalled_at=m.recalled_at,
                    versions=tuple(versions.get(key, ())),
                    receipts=tuple(receipts.get(key, ())),
                ))
        return entries

    def import_(self, entries: Sequence[HistoryEntry]) -> int:
        """Store the messages not cached yet, all or none, in one batch; how many were new.

        A message still pending on the exporting device is stored as sent (this device has no
        outbox row for it: the exporting device sends it). A message cached already keeps
        its row as it is (live delivery may have brought a later edit).
        """
        rooms = json.dumps(sorted({e.message.room_id for e in entries}))
        with self._db.transaction():
            cached = set(self._db.execute(
                "SELECT sender_device, client_id FROM messages"
                " WHERE room_id IN (SELECT value FROM json_each(?))",
                (rooms,),
            ).fetchall())
            new = [e for e in entries
                   if (e.message.ref.sender_device, e.message.ref.client_id) not in cached]
            added = self._db.executemany(
                "INSERT INTO messages (sender_device, client_id, room_id, sender_user, body,"
                " local_ts, server_ts, kind, priority, status, reply_to_device, reply_to_client,"
                " edited_at, recalled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (sender_device, client_id) DO NOTHING",
                [_row(e) for e in new],
            ).rowcount
            versions, receipts = [], []
            for e in new:
                if not (e.message.attachments or e.versions or e.receipts):
                    continue
                message_id = self._messages.id_of(e.message.ref)
                assert message_id is not None  # inserted just above
                if e.message.attachments:
                    self._attachments.add(message_id, e.message.attachments)
                versions += [(message_id, v.edit.sender_device, v.edit.client_id, v.body, v.at)
                             for v in e.versions]
                receipts += [(message_id, r.user_id, r.status, r.at) for r in e.receipts]
            self._db.executemany(
                "INSERT INTO message_versions (message_id, edit_device, edit_client, body, at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (edit_device, edit_client) DO NOTHING",
                versions,
            )
            self._db.executemany(
                "INSERT INTO receipts (message_id, user_id, status, at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                receipts,
            )
        return max(added, 0)


def _row(entry: HistoryEntry) -> tuple[object, ...]:
    m, reply = entry.message, entry.message.reply_to
    return (
        m.ref.sender_device, m.ref.client_id, m.room_id, m.sender_user, m.body, m.local_ts,
        m.server_ts, m.kind.value, m.priority.value,
        max(m.status, MessageStatus.SENT),
        None if reply is None else reply.sender_device,
        None if reply is None else reply.client_id,
        entry.edited_at, entry.recalled_at,
    )
