"""Who is who, from the engine's directory cache first and the relay's directory second."""

from __future__ import annotations

import pytest

from app.client.engine import Engine
from app.client.events import MessageSent
from app.ui.viewmodels.conversation import Bubble, Conversation
from app.ui.viewmodels.people import People
from storage.custody import MemoryCustody
from storage.rooms import RoomKind
from tests.engine_support import enroll


@pytest.mark.asyncio
async def test_names_come_from_the_cache_then_the_relay_tells_observers_of_changes(
        relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "Alice Martin", custody)
    room_id = await alice.engine.create_room(RoomKind.GROUP, "Notes", [])
    await alice.engine.send_text(room_id, "Bilan fait.")
    await alice.next(MessageSent)  # no engine event redraws the conversation below
    heard: list[int] = []
    people = People(alice.engine)
    assert people.get(alice.engine.user_id).name == alice.engine.user_id[:8]  # nothing cached
    people.observe(lambda: heard.append(1))
    conversation = Conversation(alice.engine, people, room_id)  # opened before the sync
    redrawn: list[int] = []
    conversation.observe(lambda: redrawn.append(1))
    await people.refresh()
    assert heard == [1] and redrawn == [1]
    assert people.get(alice.engine.user_id).name == "Alice Martin"
    bubbles = [item for item in conversation.timeline if isinstance(item, Bubble)]
    assert [b.sender_name for b in bubbles] == ["Alice Martin"]
    conversation.close()

    await people.refresh()  # the same directory: no redraw
    assert heard == [1]
    hugo = relay.add_user("Hugo Lefèvre", "physician")
    await people.refresh()
    assert heard == [1, 1] and people.get(hugo).profession == "physician"

    await alice.engine.stop()
    relay.stop()  # offline: a new window still shows everyone's names, from the cache
    engine = Engine.open(tmp_path / "Alice Martin", custody)
    try:
        offline = People(engine)
        assert [p.name for p in offline.everyone()] == ["Alice Martin", "Hugo Lefèvre"]
    finally:
        await engine.stop()
