"""Shared helpers of the storage tests (synthetic data only; no test lives here)."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from storage.local_store import LocalStore
from storage.messages import MessageRef, NewMessage
from storage.rooms import PatientContext, PatientIdentifier, Room, RoomKind

INS_OID = "urn:oid:1.2.250.1.213.1.4.10"
DEVICE = "dev-alice-phone"
USER = "u-alice"


def open_store(path: Path, key: bytes | None = None) -> tuple[LocalStore, bytes]:
    key = key or os.urandom(32)
    return LocalStore.open(path, key, create=True), key


def patient_room(room_id: str = "room-p1", name: str = "Chambre 12 — M. Dupont") -> Room:
    return Room(
        id=room_id,
        group_id=room_id.encode(),
        kind=RoomKind.PATIENT,
        name=name,
        created_at=1_700_000_000.0,
        patient=PatientContext(
            identifiers=(PatientIdentifier(system=INS_OID, value="1840575123456"),),
            family_name="Dupont",
            given_names=("Jean", "Édouard"),
            birth_date=date(1984, 5, 7),
            encounter="Encounter/sejour-42",
        ),
        retention_days=30,
    )


def text(
    client_id: str,
    body: str | None,
    *,
    room_id: str = "room-p1",
    at: float = 1_700_000_100.0,
    device: str = DEVICE,
    user: str = USER,
) -> NewMessage:
    return NewMessage(
        ref=MessageRef(device, client_id),
        room_id=room_id,
        sender_user=user,
        body=body,
        local_ts=at,
        server_ts=at,
    )
