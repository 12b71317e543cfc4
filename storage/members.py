"""Who is in a room, and with which per-room role (rights are per room, not per person)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from storage.database import Database


class RoomRole(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"  # may add and remove members, rename, set retention
    MEMBER = "member"
    OBSERVER = "observer"  # reads, cannot post (e.g. a supervisor following a patient room)


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    room_id: str
    user_id: str
    role: RoomRole
    joined_at: float


class MemberStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def replace(self, room_id: str, members: Iterable[Member]) -> None:
        """Take the room's whole membership, as the group's latest state gives it."""
        members = list(members)
        if any(m.room_id != room_id for m in members):
            raise ValueError("every member must belong to the room being replaced")
        with self._db.transaction():
            self._db.execute("DELETE FROM room_members WHERE room_id = ?", (room_id,))
            self._db.executemany(
                "INSERT INTO room_members (room_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)",
                [(room_id, m.user_id, m.role.value, m.joined_at) for m in members],
            )

    def of_room(self, room_id: str) -> list[Member]:
        rows = self._db.execute(
            "SELECT user_id, role, joined_at FROM room_members WHERE room_id = ? ORDER BY user_id",
            (room_id,),
        )
        return [
            Member(room_id=room_id, user_id=user, role=RoomRole(role), joined_at=joined)
            for user, role, joined in rows
        ]

    def role(self, room_id: str, user_id: str) -> RoomRole | None:
        row = self._db.execute(
            "SELECT role FROM room_members WHERE room_id = ? AND user_id = ?", (room_id, user_id)
        ).fetchone()
        return None if row is None else RoomRole(row[0])
