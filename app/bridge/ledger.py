"""What the bridge remembers between messages, in its own SQLCipher database in the profile.

Which room is which patient's stay, which messages were already applied (MSH-10, so a message
sent twice has no second effect) and the dead letters: messages not applied, kept whole until
an administrator replays them. All of it names patients, hence the encrypted file, whose key
sits in the profile's key custody next to the engine's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from storage.custody import KeyCustody, load_or_create_key
from storage.database import Database

LEDGER = "bridge.db"
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS stays (
        room_id TEXT PRIMARY KEY,
        patient TEXT NOT NULL,
        encounter TEXT,
        discharged INTEGER NOT NULL DEFAULT 0
    ) STRICT""",
    "CREATE INDEX IF NOT EXISTS stays_patient ON stays (patient)",
    "CREATE INDEX IF NOT EXISTS stays_encounter ON stays (encounter)",
    """CREATE TABLE IF NOT EXISTS applied (
        sender TEXT NOT NULL,
        control_id TEXT NOT NULL,
        applied_at REAL NOT NULL,
        PRIMARY KEY (sender, control_id)
    ) STRICT""",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY,
        sender TEXT NOT NULL,
        control_id TEXT,  -- NULL: unreadable, each kept on its own
        received_at REAL NOT NULL,
        message BLOB NOT NULL,
        code TEXT NOT NULL,
        reason TEXT NOT NULL,
        UNIQUE (sender, control_id)
    ) STRICT""",
)


@dataclass(frozen=True, slots=True)
class Stay:
    room_id: str
    patient: str  # "system|value" of the patient's first identifier (the IPP)
    encounter: str | None
    discharged: bool


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    sender: str
    control_id: str | None
    received_at: float
    message: bytes
    code: str  # the ACK code it got: AE or AR
    reason: str


class Ledger:
    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    def open(cls, profile_dir: Path, custody: KeyCustody, device_id: str) -> Ledger:
        """The profile's ledger, created with its own key on first use."""
        key = load_or_create_key(custody, f"{device_id}_bridge")
        db = Database.open(profile_dir / LEDGER, key, create=True)
        with db.transaction():
            for statement in _SCHEMA:
                db.execute(statement)
        return cls(db)

    def close(self) -> None:
        self._db.close()

    # -- stays -------------------------------------------------------------------------------
    def save_stay(self, stay: Stay) -> None:
        self._db.execute(
            "INSERT INTO stays (room_id, patient, encounter, discharged) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (room_id) DO UPDATE SET patient = excluded.patient,"
            " encounter = excluded.encounter, discharged = excluded.discharged",
            (stay.room_id, stay.patient, stay.encounter, int(stay.discharged)),
        )

    def stay_of_encounter(self, encounter: str) -> Stay | None:
        row = self._db.execute(
            "SELECT room_id, patient, encounter, discharged FROM stays WHERE encounter = ?",
            (encounter,),
        ).fetchone()
        return None if row is None else Stay(*row[:3], bool(row[3]))

    def stays_of(self, patients: list[str]) -> list[Stay]:
        """Every stay of a patient known by any of these identifiers, the open ones first."""
        marks = ", ".join("?" * len(patients))
        rows = self._db.execute(
            "SELECT room_id, patient, encounter, discharged FROM stays"
            f" WHERE patient IN ({marks}) ORDER BY discharged, rowid DESC",
            patients,
        )
        return [Stay(*row[:3], bool(row[3])) for row in rows]

    # -- idempotency -------------------------------------------------------------------------
    def applied(self, sender: str, control_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM applied WHERE sender = ? AND control_id = ?", (sender, control_id)
        ).fetchone()
        return row is not None

    def mark_applied(self, sender: str, control_id: str) -> None:
        """Remember the message as applied and take it out of the dead letters if it was one."""
        with self._db.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO applied (sender, control_id, applied_at) VALUES (?, ?, ?)",
                (sender, control_id, time.time()),
            )
            self._db.execute(
                "DELETE FROM dead_letters WHERE sender = ? AND control_id = ?",
                (sender, control_id),
            )

    # -- dead letters ------------------------------------------------------------------------
    def keep_dead_letter(
        self, sender: str, control_id: str | None, message: bytes, code: str, reason: str
    ) -> int:
        """Keep an unapplied message (a resent one replaces its earlier copy); its id."""
        row = self._db.execute(
            "INSERT INTO dead_letters (sender, control_id, received_at, message, code, reason)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sender, control_id) DO UPDATE SET"
            " received_at = excluded.received_at, message = excluded.message,"
            " code = excluded.code, reason = excluded.reason RETURNING id",
            (sender, control_id, time.time(), message, code, reason),
        ).fetchone()
        return int(row[0])

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._db.execute(
            "SELECT id, sender, control_id, received_at, message, code, reason"
            " FROM dead_letters ORDER BY id"
        )
        return [DeadLetter(*row) for row in rows]

    def dead_letter(self, letter_id: int) -> DeadLetter | None:
        row = self._db.execute(
            "SELECT id, sender, control_id, received_at, message, code, reason"
            " FROM dead_letters WHERE id = ?",
            (letter_id,),
        ).fetchone()
        return None if row is None else DeadLetter(*row)

    def forget_dead_letter(self, letter_id: int) -> None:
        self._db.execute("DELETE FROM dead_letters WHERE id = ?", (letter_id,))
