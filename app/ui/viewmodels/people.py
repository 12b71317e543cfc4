"""Who is who: colleagues' names and professions for bubbles and member lists.

Read from the engine's directory cache at once (the app shows the list before the relay
answers, and offline), then brought up to date by ``refresh``, which tells observers when
anything changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.client.engine import Engine
from app.ui.viewmodels.observable import Observable
from storage.directory import DirectoryEntry


@dataclass(frozen=True, slots=True)
class Person:
    user_id: str
    name: str
    profession: str  # protocol.rest.Profession's value; the view translates it
    services: tuple[str, ...] = ()  # what a new conversation's search also looks in
    specialty: str | None = None


def _person(entry: DirectoryEntry) -> Person:
    return Person(entry.user_id, entry.display_name, entry.profession, entry.services,
                  entry.specialty)


class People(Observable):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._known = {e.user_id: _person(e) for e in engine.colleagues()}

    async def refresh(self) -> None:
        """Sync the whole directory from the relay; observers hear of it if it changed."""
        known = {e.user_id: _person(e) for e in await self._engine.sync_directory()}
        if known != self._known:
            self._known = known
            self._changed()

    def get(self, user_id: str) -> Person:
        """The person, or a placeholder named by the id's start when the directory lacks it."""
        return self._known.get(user_id) or Person(user_id, user_id[:8], "other")

    def everyone(self) -> list[Person]:
        return sorted(self._known.values(), key=lambda p: p.name.casefold())
