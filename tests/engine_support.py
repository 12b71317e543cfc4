"""Helpers for the engine tests: real engines against the real relay, watched by their events."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.client.engine import Engine
from app.client.events import Event, RoomChanged
from crypto.group import Group
from storage.custody import MemoryCustody
from storage.rooms import RoomKind
from tests.relay_harness import RelayProcess


class Watched:
    """An engine with its events queued, so a test can wait for the next one of a kind."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        engine.subscribe(self.events.put_nowait)

    async def next(self, kind: type, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if isinstance(event, kind):
                    return event


async def enroll(relay: RelayProcess, tmp_path: Path, name: str, custody: MemoryCustody) -> Watched:
    """A new user with one device, enrolled and online."""
    user_id = relay.add_user(name)
    engine = await Engine.enroll(tmp_path / name, relay.url, relay.invite(user_id), custody)
    await engine.start()
    return Watched(engine)


async def pair(relay: RelayProcess, tmp_path: Path, custody: MemoryCustody, kind: RoomKind,
               name: str, names: tuple[str, str] = ("alice", "bob"),
               ) -> tuple[Watched, Watched, str]:
    """Two enrolled devices and a room the first created with the second, which has joined it;
    both are stopped if that fails."""
    first = await enroll(relay, tmp_path, names[0], custody)
    second = await enroll(relay, tmp_path, names[1], custody)
    try:
        room_id = await first.engine.create_room(kind, name, [second.engine.user_id])
        await second.next(RoomChanged)
    except BaseException:
        await asyncio.gather(first.engine.stop(), second.engine.stop())
        raise
    return first, second, room_id


async def until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def group_of(engine: Engine, room_id: str) -> Group:
    """The test hook into the engine's MLS state (its epoch authenticator, its activity)."""
    room = engine._store.rooms.get(room_id)
    assert room is not None
    group = engine._group(room.group_id)
    assert group is not None
    return group
