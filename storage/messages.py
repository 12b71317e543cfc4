"""Messages in the device's cache: exactly once each, with edits and recalls as tombstones.

A message is named across devices by its sender's device id and the client id that device
chose (``MessageRef``); the cache holds each at most once, so a redelivered envelope is a no-op.

Edits keep their history. A clinical message corrected after the fact (a dose, a bed number)
must stay traceable, so every superseded text is kept in ``message_versions`` with its time and
the message shows the newest one; an edit that arrives after a newer one only joins the
history. A recall erases: the body, its history and its attachments' keys are deleted and the
row stays as a tombstone, because a recall is how a sender retracts a message sent to the
wrong patient's room, where hiding the text would not be enough. Only the sender may do either.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, fields
from enum import StrEnum

from storage.attachments import Attachment, AttachmentStore
from storage.database import Database
from storage.errors import NotSenderError
from storage.outbox import OutboundEnvelope, Outbox
from storage.status import MessageStatus, advance


class MessageKind(StrEnum):
    TEXT = "text"
    DOCUMENT = "document"
    SYSTEM = "system"  # room events: joined, renamed, linked to a patient


class Priority(StrEnum):
    NORMAL = "normal"
    URGENT = "urgent"  # must be acknowledged by its recipients


@dataclass(frozen=True, slots=True)
class MessageRef:
    sender_device: str
    client_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMessage:
    ref: MessageRef
    room_id: str
    sender_user: str
    body: str | None
    local_ts: float  # when this device wrote or received it
    server_ts: float | None = None  # the relay's time, once known
    kind: MessageKind = MessageKind.TEXT
    priority: Priority = Priority.NORMAL
    status: MessageStatus = MessageStatus.DELIVERED
    reply_to: MessageRef | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Message(NewMessage):
    id: int  # local row id: the timeline's tie-breaker, the search index's key
    edited_at: float | None = None
    recalled_at: float | None = None


@dataclass(frozen=True, slots=True)
class Version:
    """A text a message showed before an edit replaced it."""

    body: str | None
    at: float


_NEW_FIELDS = tuple(f.name for f in fields(NewMessage))
_BURST_SECONDS = 600.0  # how far back ``accepted`` looks for pending messages to move
_COLUMNS = (
    "id, sender_device, client_id, room_id, sender_user, body, local_ts, server_ts, kind,"
    " priority, status, reply_to_device, reply_to_client, edited_at, recalled_at"
)


def _message(row: Sequence, attachments: tuple[Attachment, ...]) -> Message:
    (id_, device, client, room_id, user, body, local_ts, server_ts, kind, priority, status,
     reply_device, reply_client, edited_at, recalled_at) = row
    return Message(
        id=id_,
        ref=MessageRef(device, client),
        room_id=room_id,
        sender_user=user,
        body=body,
        local_ts=local_ts,
        server_ts=server_ts,
        kind=MessageKind(kind),
        priority=Priority(priority),
        status=MessageStatus(status),
        reply_to=None if reply_device is None else MessageRef(reply_device, reply_client),
        attachments=attachments,
        edited_at=edited_at,
        recalled_at=recalled_at,
    )


class MessageStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._attachments = AttachmentStore(db)
        self._outbox = Outbox(db)

    def add_incoming(self, message: NewMessage) -> Message | None:
        """Cache a received message; None when it is already there (a redelivery)."""
        # Without attachments it is one INSERT, atomic by itself: a savepoint around it would
        # cost about as much as the insert.
        with self._db.transaction() if message.attachments else nullcontext():
            return self._insert(message)

    def add_outgoing(self, message: NewMessage, envelope: OutboundEnvelope) -> Message:
        """Cache a message this device sends together with its outbox row: both or neither.

        The message is stored as pending; ``envelope`` must carry the message's client id,
        which is the id the relay acknowledges and recipients deduplicate by.
        """
        if envelope.client_id != message.ref.client_id:
            raise ValueError("the envelope must carry the message's client id")
        with self._db.transaction():
            stored = self._insert(message, status=MessageStatus.PENDING)
            if stored is None:
                raise ValueError(f"message {message.ref} is already cached")
            self._outbox.enqueue(envelope, now=message.local_ts, message_id=stored.id)
        return stored

    def _insert(self, m: NewMessage, *, status: MessageStatus | None = None) -> Message | None:
        """``status``, if given, instead of the message's own."""
        status = m.status if status is None else status
        reply = m.reply_to
        row = self._db.execute(
            "INSERT INTO messages (sender_device, client_id, room_id, sender_user, body,"
            " local_ts, server_ts, kind, priority, status, reply_to_device, reply_to_client)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (sender_device, client_id) DO NOTHING RETURNING id",
            (
                m.ref.sender_device, m.ref.client_id, m.room_id, m.sender_user, m.body,
                m.local_ts, m.server_ts, m.kind.value, m.priority.value, status,
                None if reply is None else reply.sender_device,
                None if reply is None else reply.client_id,
            ),
        ).fetchall()
        if not row:
            return None
        message_id = row[0][0]
        if m.attachments:
            self._attachments.add(message_id, m.attachments)
        fields_ = {name: getattr(m, name) for name in _NEW_FIELDS}
        fields_["status"] = status
        return Message(**fields_, id=message_id)

    def get(self, ref: MessageRef) -> Message | None:
        rows = self._load(
            "sender_device = ? AND client_id = ?", (ref.sender_device, ref.client_id)
        )
        return rows[0] if rows else None

    def with_client_id(self, client_id: str) -> list[Message]:
        """The messages a client id names (one, unless two devices chose the same id): for
        a user who quotes the id a listing showed."""
        return self._load("client_id = ? ORDER BY id", (client_id,))

    def latest(
        self, room_id: str, *, limit: int = 50, before: Message | None = None
    ) -> list[Message]:
        """The room's last ``limit`` messages (older than ``before``), oldest first.

        The timeline is ordered by the relay's time, or this device's for what the relay has
        not stamped yet, with the row id breaking ties; pass the oldest message shown as
        ``before`` to page back.
        """
        if before is None:
            where, params = "room_id = ?", (room_id,)
        else:
            cursor_ts = before.server_ts if before.server_ts is not None else before.local_ts
            where = "room_id = ? AND (sort_ts, id) < (?, ?)"
            params = (room_id, cursor_ts, before.id)
        newest_first = self._load(
            f"{where} ORDER BY sort_ts DESC, id DESC LIMIT ?", (*params, limit)
        )
        return newest_first[::-1]

    def documents(self, room_id: str, *, limit: int = 100) -> list[Message]:
        """The room's last ``limit`` document messages still shared (not recalled), newest
        first: one query, however many text messages lie between them."""
        return self._load(
            "room_id = ? AND kind = ? AND recalled_at IS NULL ORDER BY sort_ts DESC, id DESC"
            " LIMIT ?", (room_id, MessageKind.DOCUMENT.value, limit),
        )

    def _load(self, condition: str, params: Sequence) -> list[Message]:
        sql = f"SELECT {_COLUMNS} FROM messages WHERE {condition}"
        rows = self._db.execute(sql, params).fetchall()
        attachments = self._attachments.of_messages([row[0] for row in rows])
        return [_message(row, attachments.get(row[0], ())) for row in rows]

    def advance_status(self, ref: MessageRef, status: MessageStatus) -> bool:
        """Move the message forward (read, acknowledged here); False if unknown or already
        there or beyond."""
        message_id = self.id_of(ref)
        return message_id is not None and advance(self._db, message_id, status)

    def accepted(self, frames: Sequence[tuple[str, float | None]]) -> list[tuple[str, str | None]]:
        """Frames the relay stored, by client id, with the relay's time for each: their outbox
        rows go, and the messages they carried are sent and take the relay's time, which
        orders them on every device alike. The device's messages of the room still pending
        and written before that time move just after it: sent in a burst, the next one was
        written before the relay took this one, and must not show above it meanwhile. That
        move is made once per room, for the latest time (the relay's times only grow).

        Returns each frame whose outbox row went, with the room of the message it carried
        (None for a receipt); a frame accepted before returns nothing. A status only moves
        forward: a late acceptance does not undo "acknowledged"."""
        taken: list[tuple[str, str | None]] = []
        latest: dict[str, float] = {}
        with self._db.transaction():
            for client_id, server_ts in frames:
                row = self._db.execute(
                    "DELETE FROM outbox WHERE client_id = ? RETURNING message_id", (client_id,)
                ).fetchone()
                if row is None:
                    continue
                room = None if row[0] is None else self._db.execute(
                    "UPDATE messages SET status = max(status, ?1),"
                    " server_ts = coalesce(?2, server_ts) WHERE id = ?3 RETURNING room_id",
                    (MessageStatus.SENT, server_ts, row[0]),
                ).fetchone()
                room_id = None if room is None else str(room[0])
                taken.append((client_id, room_id))
                if room_id is not None and server_ts is not None:
                    latest[room_id] = max(server_ts, latest.get(room_id, server_ts))
            # Same time, later row id: still in the order written. Only the outbox's
            # messages, so it costs what is in flight, not what the room holds; only the last
            # minutes' (a burst), so a backlog written long before stays where it was written.
            # (The unary plus keeps the planner off the timeline index: it would read the
            # whole room.)
            for room_id, server_ts in latest.items():
                self._db.execute(
                    "UPDATE messages SET local_ts = ?1 WHERE id IN (SELECT message_id FROM"
                    " outbox WHERE message_id IS NOT NULL) AND +room_id = ?2 AND server_ts IS"
                    " NULL AND local_ts >= ?1 - ?3 AND local_ts < ?1",
                    (server_ts, room_id, _BURST_SECONDS),
                )
        return taken

    def mark_read(self, room_id: str, upto: Message, *, reader_user: str) -> list[MessageRef]:
        """Mark others' messages of the room up to ``upto`` (in timeline order) as read; the
        ones that were not yet, which are those to send a read receipt for."""
        cursor_ts = upto.server_ts if upto.server_ts is not None else upto.local_ts
        rows = self._db.execute(
            "UPDATE messages SET status = ?1 WHERE room_id = ?2 AND sender_user != ?3"
            " AND status < ?1 AND recalled_at IS NULL AND (sort_ts, id) <= (?4, ?5)"
            " RETURNING sender_device, client_id",
            (MessageStatus.READ, room_id, reader_user, cursor_ts, upto.id),
        ).fetchall()
        return [MessageRef(device, client) for device, client in rows]

    def unacknowledged_urgent(self, user_id: str) -> list[Message]:
        """Urgent messages from others that ``user_id`` has not acknowledged, oldest first:
        what a clinician still owes an answer to."""
        return self._load(
            "priority = ? AND sender_user != ? AND status < ? AND recalled_at IS NULL"
            " ORDER BY sort_ts, id",
            (Priority.URGENT.value, user_id, MessageStatus.ACKNOWLEDGED),
        )

    def id_of(self, ref: MessageRef) -> int | None:
        row = self._db.execute(
            "SELECT id FROM messages WHERE sender_device = ? AND client_id = ?",
            (ref.sender_device, ref.client_id),
        ).fetchone()
        return None if row is None else int(row[0])

    def edit(
        self, target: MessageRef, *, edit: MessageRef, editor_user: str, body: str, at: float
    ) -> bool:
        """Apply the edit ``edit`` (sent at ``at``) to ``target``; False when it changes nothing:
        a redelivered edit, a recalled or unknown target."""
        with self._db.transaction():
            found = self._own(target, editor_user)
            if found is None:
                return False
            message_id, current, current_at = found
            newer = at > current_at
            # A newer edit pushes the shown text into the history; an older one arriving
            # late only joins it.
            history = (current, current_at) if newer else (body, at)
            inserted = self._db.execute(
                "INSERT INTO message_versions (message_id, edit_device, edit_client, body, at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (edit_device, edit_client) DO NOTHING",
                (message_id, edit.sender_device, edit.client_id, *history),
            ).rowcount
            if inserted and newer:
                self._db.execute(
                    "UPDATE messages SET body = ?, edited_at = ? WHERE id = ?",
                    (body, at, message_id),
                )
        return inserted > 0

    def recall(self, target: MessageRef, *, recaller_user: str, at: float) -> bool:
        """Erase ``target``'s text, history and attachment keys, and cancel it if unsent.

        The row stays as a tombstone (the timeline shows "message recalled"). False when the
        message is unknown or already recalled: the relay delivers a group's messages in
        order, so a recall never precedes the message it recalls.
        """
        with self._db.transaction():
            found = self._own(target, recaller_user)
            if found is None:
                return False
            message_id = found[0]
            self._db.execute(
                "UPDATE messages SET body = NULL, edited_at = NULL, recalled_at = ? WHERE id = ?",
                (at, message_id),
            )
            for table in ("message_versions", "attachments", "outbox"):
                self._db.execute(f"DELETE FROM {table} WHERE message_id = ?", (message_id,))
        return True

    def _own(self, target: MessageRef, user: str) -> tuple[int, str | None, float] | None:
        """Id, current text and its time of a live message, checking ``user`` sent it."""
        row = self._db.execute(
            "SELECT id, sender_user, body, coalesce(edited_at, sort_ts), recalled_at"
            " FROM messages WHERE sender_device = ? AND client_id = ?",
            (target.sender_device, target.client_id),
        ).fetchone()
        if row is None:
            return None
        message_id, sender_user, body, shown_at, recalled_at = row
        if sender_user != user:
            raise NotSenderError(f"{user} cannot change a message sent by {sender_user}")
        return None if recalled_at is not None else (message_id, body, shown_at)

    def versions(self, ref: MessageRef) -> list[Version]:
        """The texts the message showed before its current one, oldest first."""
        rows = self._db.execute(
            "SELECT v.body, v.at FROM message_versions v JOIN messages m ON m.id = v.message_id"
            " WHERE m.sender_device = ? AND m.client_id = ? ORDER BY v.at, v.id",
            (ref.sender_device, ref.client_id),
        )
        return [Version(body, at) for body, at in rows]

    def purge_expired(self, now: float) -> int:
        """Delete what rooms' retention policies no longer allow; return how many messages.

        Unsent messages are kept whatever their age: they have not reached anyone yet.
        """
        purged = 0
        with self._db.transaction():
            rooms = self._db.execute(
                "SELECT id, retention_days FROM rooms WHERE retention_days IS NOT NULL"
            ).fetchall()
            for room_id, days in rooms:
                purged += self._db.execute(
                    "DELETE FROM messages WHERE room_id = ? AND sort_ts < ? AND status != ?",
                    (room_id, now - days * 86400, MessageStatus.PENDING),
                ).rowcount
        return purged
