"""Per room, how much the current epoch's keys have been used and when this device last renewed
its own leaf: what the self-update policy (app/client/maintenance.py) decides on.

Kept as settings rows (one small JSON value per room) rather than a column, so that counting a
message is one upsert inside the transaction that stores the message and its group state.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database
from storage.settings import Settings

_PREFIX = "room_activity:"


@dataclass(frozen=True, slots=True)
class RoomActivity:
    messages: int  # sent and received since the room's last commit
    updated_at: float  # when this device last committed in the room (or first counted in it)


class RoomActivityStore:
    def __init__(self, db: Database) -> None:
        self._settings = Settings(db)

    def get(self, room_id: str, *, now: float) -> RoomActivity:
        """The room's activity; a room never counted starts now, with no message."""
        value = self._settings.get(_PREFIX + room_id)
        if not isinstance(value, dict):
            return RoomActivity(0, now)
        return RoomActivity(int(value["messages"]), float(value["updated_at"]))

    def count(self, room_id: str, *, now: float) -> RoomActivity:
        """One more message sent or received in the room (call inside its transaction)."""
        before = self.get(room_id, now=now)
        return self._set(room_id, RoomActivity(before.messages + 1, before.updated_at))

    def committed(self, room_id: str, *, own: bool, now: float) -> None:
        """The room moved to a new epoch: its message count starts again, and this device's
        update time too when the commit was its own."""
        before = self.get(room_id, now=now)
        self._set(room_id, RoomActivity(0, now if own else before.updated_at))

    def forget(self, room_id: str) -> None:
        self._settings.delete(_PREFIX + room_id)

    def _set(self, room_id: str, activity: RoomActivity) -> RoomActivity:
        self._settings.set(
            _PREFIX + room_id,
            {"messages": activity.messages, "updated_at": activity.updated_at},
        )
        return activity
