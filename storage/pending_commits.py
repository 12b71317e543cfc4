"""This device's commits sent and not yet answered, at most one per group.

A commit is applied only once the relay accepts it; if the process dies in between, the relay
may have accepted it, and every other member moved on. So the frame (with its client id, the
relay's idempotency key) and the group state it leads to are stored before the frame is sent:
the next start sends the same frame again and applies the stored state on acceptance.
The state holds the new epoch's secrets: it lives only in this encrypted database.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from storage.database import Database

_PREFIX = "pending_commit:"


@dataclass(frozen=True, slots=True)
class PendingCommitRecord:
    group_id: bytes
    epoch: int  # the epoch the commit was built on; the relay's answer moves it to epoch + 1
    frame: bytes  # the Commit frame as sent (protocol JSON)
    next_state: bytes = field(repr=False)  # Group.export_state() of the epoch it leads to


class PendingCommitStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, record: PendingCommitRecord) -> None:
        value = {
            "epoch": record.epoch,
            "frame": record.frame.decode(),
            "next_state": base64.b64encode(record.next_state).decode(),
        }
        self._db.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_key(record.group_id), json.dumps(value)),
        )

    def get(self, group_id: bytes) -> PendingCommitRecord | None:
        row = self._db.execute(
            "SELECT value FROM settings WHERE key = ?", (_key(group_id),)
        ).fetchone()
        return None if row is None else _record(group_id, row[0])

    def all(self) -> list[PendingCommitRecord]:
        rows = self._db.execute(
            "SELECT key, value FROM settings WHERE substr(key, 1, ?) = ? ORDER BY key",
            (len(_PREFIX), _PREFIX),
        )
        return [_record(bytes.fromhex(key[len(_PREFIX):]), value) for key, value in rows]

    def delete(self, group_id: bytes) -> None:
        self._db.execute("DELETE FROM settings WHERE key = ?", (_key(group_id),))


def _key(group_id: bytes) -> str:
    return _PREFIX + group_id.hex()


def _record(group_id: bytes, value: str) -> PendingCommitRecord:
    parsed = json.loads(value)
    return PendingCommitRecord(
        group_id=group_id,
        epoch=int(parsed["epoch"]),
        frame=parsed["frame"].encode(),
        next_state=base64.b64decode(parsed["next_state"]),
    )
