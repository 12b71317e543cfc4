"""Who is who: colleagues' names and professions for bubbles and member lists.

Read from the relay's directory with this device's own login until the engine keeps a
directory cache of its own; ``refresh`` is the one place that changes then.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.client.engine import Engine
from app.client.relay_api import RelayClient

_PAGE = 100


@dataclass(frozen=True, slots=True)
class Person:
    user_id: str
    name: str
    profession: str  # protocol.rest.Profession's value; the view translates it
    services: tuple[str, ...] = ()  # what a new conversation's search also looks in
    specialty: str | None = None


class People:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._known: dict[str, Person] = {}

    async def refresh(self) -> None:
        """Fetch the whole directory (a hospital's is a few thousand entries at most)."""
        account = self._engine.account
        known: dict[str, Person] = {}
        async with RelayClient(account.relay_url) as relay:
            await relay.login(account.device_id, account.signature_private_key)
            cursor: str | None = None
            while True:
                page = await relay.directory(limit=_PAGE, cursor=cursor)
                for user in page.users:
                    known[user.id] = Person(user.id, user.display_name, user.profession.value,
                                            tuple(user.services), user.specialty)
                cursor = page.next_cursor
                if cursor is None:
                    break
        self._known = known

    def get(self, user_id: str) -> Person:
        """The person, or a placeholder named by the id's start when the directory lacks it."""
        return self._known.get(user_id) or Person(user_id, user_id[:8], "other")

    def everyone(self) -> list[Person]:
        return sorted(self._known.values(), key=lambda p: p.name.casefold())
