"""MLS group states, as the opaque bytes crypto/ serialises, one per group id.

The state changes with every message decrypted (the secret tree ratchets), so the engine saves
it in the same transaction as the message it produced. An epoch never goes back: saving an
older epoch over a newer one is a bug that would resurrect deleted keys, and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from storage.database import Database


@dataclass(frozen=True, slots=True)
class GroupRecord:
    group_id: bytes
    epoch: int
    state: bytes = field(repr=False)


class GroupStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, record: GroupRecord) -> None:
        cursor = self._db.execute(
            "INSERT INTO mls_groups (group_id, epoch, state) VALUES (?, ?, ?)"
            " ON CONFLICT (group_id) DO UPDATE SET epoch = excluded.epoch, state = excluded.state"
            " WHERE excluded.epoch >= mls_groups.epoch",
            (record.group_id, record.epoch, record.state),
        )
        if cursor.rowcount == 0:
            raise ValueError(f"group state epoch {record.epoch} is older than the stored one")

    def load(self, group_id: bytes) -> GroupRecord | None:
        row = self._db.execute(
            "SELECT epoch, state FROM mls_groups WHERE group_id = ?", (group_id,)
        ).fetchone()
        return None if row is None else GroupRecord(group_id, row[0], row[1])

    def delete(self, group_id: bytes) -> None:
        self._db.execute("DELETE FROM mls_groups WHERE group_id = ?", (group_id,))

    def group_ids(self) -> list[bytes]:
        return [row[0] for row in self._db.execute("SELECT group_id FROM mls_groups")]
