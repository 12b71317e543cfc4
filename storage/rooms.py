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


@dataclass(frozen=True, slots=True, kw_only=True)
class Room:
    id: str
    group_id: bytes
    kind: RoomKind
    name: str
    created_at: float
    patient: PatientContext | None = None
    retention_days: int | None = None  # None: kept until the user leaves the room


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
    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, room: Room) -> None:
        """Insert the room, or take its new state (a commit renamed it, changed retention…)."""
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
        row = self._db.execute(f"SELECT {_COLUMNS} FROM rooms WHERE id = ?", (room_id,)).fetchone()
        return None if row is None else _room(row)

    def by_group(self, group_id: bytes) -> Room | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM rooms WHERE group_id = ?", (group_id,)
        ).fetchone()
        return None if row is None else _room(row)

    def all(self, kind: RoomKind | None = None) -> list[Room]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM rooms WHERE ?1 IS NULL OR kind = ?1 ORDER BY name, id",
            (None if kind is None else kind.value,),
        )
        return [_room(row) for row in rows]

    def delete(self, room_id: str) -> None:
        """Forget the room and, with it, its members, messages, receipts and attachments."""
        self._db.execute("DELETE FROM rooms WHERE id = ?", (room_id,))
