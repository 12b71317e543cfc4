"""Rooms: what the device knows of each conversation's state (kind, name, patient, retention).

Room state travels inside the MLS group, never in clear on the relay; this is the device's
copy, one room per group. A patient room carries the patient context it was opened for (from
the hospital information system), stored as JSON inside the encrypted database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from storage.database import Database
from storage.status import MessageStatus


class RoomKind(StrEnum):
    DIRECT = "direct"
    GROUP = "group"
    SERVICE = "service"  # a ward or department
    PATIENT = "patient"
    PROJECT = "project"  # across the sites of a hospital group


class PatientIdentifier(BaseModel):
    """A FHIR-style identifier: ``system`` is a URI (the INS OID for the national identity)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    system: str
    value: str


class PatientContext(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    identifiers: tuple[PatientIdentifier, ...]
    family_name: str
    given_names: tuple[str, ...] = ()
    birth_date: date | None = None
    encounter: str | None = None  # FHIR reference of the stay, e.g. "Encounter/…"
    ward: str | None = None  # where the patient lies now, for the banner (ADT transfers move it)
    bed: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Room:
    id: str
    group_id: bytes
    kind: RoomKind
    name: str
    created_at: float
    patient: PatientContext | None = None
    retention_days: int | None = None  # None: kept until the user leaves the room


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomOverview:
    """A line of the room list: the room, its latest message and what awaits the user."""

    room: Room
    last_activity: float  # the latest message's time, or the room's creation
    last_sender: str | None  # None: no message yet
    last_preview: str | None  # the start of the latest message's text (a document: its file
    # name after a paperclip); None if recalled
    unread: int  # others' messages not read yet
    unacknowledged_urgent: int  # others' urgent messages not acknowledged yet
    unreadable: bool = False  # this device fell out of step with the room (app/client/engine)


PREVIEW_CHARS = 200
# Settings key prefix (then the room id): rooms this device can no longer read, which the
# engine marks and the room list shows.
UNREADABLE_SETTING = "room_unreadable:"
_COLUMNS = "id, group_id, kind, name, created_at, patient, retention_days"


def _room(row: tuple) -> Room:
    id_, group_id, kind, name, created_at, patient, retention_days = row
    return Room(
        id=id_,
        group_id=group_id,
        kind=RoomKind(kind),
        name=name,
        created_at=created_at,
        patient=None if patient is None else PatientContext.model_validate_json(patient),
        retention_days=retention_days,
    )


class RoomStore:
    """Rooms are read for every message and change only at commits: the rows read are kept
    (frozen), forgotten when saved or deleted, and all at once after any rollback, which may
    have undone a save."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cached: dict[str, Room] = {}  # by room id
        self._group_rooms: dict[bytes, str] = {}  # group id -> room id, checked against the room
        self._rollbacks = db.rollbacks

    def _cache(self) -> dict[str, Room]:
        if self._rollbacks != self._db.rollbacks:
            self._cached.clear()
            self._rollbacks = self._db.rollbacks
        return self._cached

    def save(self, room: Room) -> None:
        """Insert the room, or take its new state (a commit renamed it, changed retention…)."""
        self._cache().pop(room.id, None)
        self._db.execute(
            f"INSERT INTO rooms ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name,"
            " patient = excluded.patient, retention_days = excluded.retention_days",
            (
                room.id,
                room.group_id,
                room.kind.value,
                room.name,
                room.created_at,
                None if room.patient is None else room.patient.model_dump_json(),
                room.retention_days,
            ),
        )

    def get(self, room_id: str) -> Room | None:
        cache = self._cache()
        room = cache.get(room_id)
        if room is None:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM rooms WHERE id = ?", (room_id,)).fetchone()
            if row is None:
                return None
            room = cache[room_id] = _room(row)
        return room

    def by_group(self, group_id: bytes) -> Room | None:
        """A room's id is not its group's (rooms.save takes both): looked up once."""
        room_id = self._group_rooms.get(group_id)
        if room_id is None:
            row = self._db.execute(
                "SELECT id FROM rooms WHERE group_id = ?", (group_id,)).fetchone()
            if row is None:
                return None
            room_id = self._group_rooms[group_id] = row[0]
        room = self.get(room_id)
        if room is None or room.group_id != group_id:
            self._group_rooms.pop(group_id, None)
            return None
        return room

    def all(self, kind: RoomKind | None = None) -> list[Room]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM rooms WHERE ?1 IS NULL OR kind = ?1 ORDER BY name, id",
            (None if kind is None else kind.value,),
        )
        return [_room(row) for row in rows]

    def overview(self, user_id: str) -> list[RoomOverview]:
        """Every room for ``user_id``'s room list, in one query: rooms with unacknowledged
        urgent messages first, then by latest activity."""
        rows = self._db.execute(
            "WITH waiting AS (SELECT room_id,"
            " sum(status < ?2) AS unread, sum(priority = 'urgent' AND status < ?3) AS urgent"
            " FROM messages WHERE sender_user != ?1 AND recalled_at IS NULL GROUP BY room_id)"
            f" SELECT {', '.join('r.' + c for c in _COLUMNS.split(', '))},"
            " coalesce(last.sort_ts, r.created_at) AS activity, last.sender_user,"
            " CASE WHEN last.recalled_at IS NULL THEN coalesce(substr(last.body, 1, ?4),"
            "  (SELECT '📎 ' || a.file_name FROM attachments a WHERE a.message_id = last.id"
            "   ORDER BY a.position LIMIT 1)) END,"
            " coalesce(w.unread, 0), coalesce(w.urgent, 0),"
            " EXISTS (SELECT 1 FROM settings s WHERE s.key = ?5 || r.id)"
            " FROM rooms r LEFT JOIN waiting w ON w.room_id = r.id"
            " LEFT JOIN messages last ON last.id = (SELECT m.id FROM messages m"
            "  WHERE m.room_id = r.id ORDER BY m.sort_ts DESC, m.id DESC LIMIT 1)"
            " ORDER BY coalesce(w.urgent, 0) > 0 DESC, activity DESC, r.id",
            (user_id, MessageStatus.READ, MessageStatus.ACKNOWLEDGED, PREVIEW_CHARS,
             UNREADABLE_SETTING),
        )
        return [
            RoomOverview(
                room=_room(row[:7]), last_activity=row[7], last_sender=row[8],
                last_preview=row[9], unread=row[10], unacknowledged_urgent=row[11],
                unreadable=bool(row[12]),
            )
            for row in rows
        ]

    def delete(self, room_id: str) -> None:
        """Forget the room and, with it, its members, messages, receipts and attachments."""
        self._cache().pop(room_id, None)
        self._db.execute("DELETE FROM rooms WHERE id = ?", (room_id,))
