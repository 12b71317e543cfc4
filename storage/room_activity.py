"""Per room, when this device last renewed its own leaf: with the number of messages the room's
current epoch carried, what the self-update policy (app/client/maintenance.py) decides on.

The message count is not stored here: it is the sum of the senders' generations in the
epoch's secret tree (``Group.application_messages``), which every stored message already
advances. Only the renewal time is kept, as a settings row per room written at this device's
own commits, and read from memory in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database
from storage.settings import Settings

_PREFIX = "room_activity:"


@dataclass(frozen=True, slots=True)
class RoomActivity:
    messages: int  # sent and received in the room's current epoch
    updated_at: float  # when this device last committed in the room (or first counted in it)


class RoomActivityStore:
    def __init__(self, db: Database) -> None:
        self._settings = Settings(db)
        self._renewed: dict[str, float] = {}

    def renewed_at(self, room_id: str, *, now: float) -> float:
        """When this device last renewed its leaf in the room; a room never seen starts now."""
        at = self._renewed.get(room_id)
        if at is None:
            value = self._settings.get(_PREFIX + room_id)
            if isinstance(value, dict):
                at = self._renewed[room_id] = float(value["updated_at"])
            else:
                self.renewed(room_id, at=now)
                at = now
        return at

    def renewed(self, room_id: str, *, at: float) -> None:
        """This device committed in the room (its leaf is new): call inside that transaction."""
        self._settings.set(_PREFIX + room_id, {"updated_at": at})
        self._renewed[room_id] = at

    def forget(self, room_id: str) -> None:
        self._settings.delete(_PREFIX + room_id)
        self._renewed.pop(room_id, None)
