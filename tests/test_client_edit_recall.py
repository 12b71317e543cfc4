"""Edits, recalls and urgent alerts end to end against the real relay."""

from __future__ import annotations

import pytest

from app.client.content import EditContent, RecallContent, Reference
from app.client.engine import EngineError
from app.client.events import (
    MessageChanged,
    MessageReceived,
    RoomChanged,
    RoomRuleBroken,
    UrgentReceived,
)
from storage.custody import MemoryCustody
from storage.rooms import RoomKind
from tests.engine_support import enroll
from tests.forged_client import forced_post


@pytest.mark.asyncio
async def test_edit_and_recall_reach_every_member(relay, tmp_path):
    custody = MemoryCustody()
    alice, bob = [await enroll(relay, tmp_path, name, custody) for name in ("alice", "bob")]
    try:
        room_id = await alice.engine.create_room(RoomKind.GROUP, "Cardio", [bob.engine.user_id])
        await bob.next(RoomChanged)
        ref = await alice.engine.send_text(room_id, "Furosémide 40 mg")
        await bob.next(MessageReceived)

        await alice.engine.edit(ref, "Furosémide 20 mg")
        mine = (await alice.next(MessageChanged)).message
        theirs = (await bob.next(MessageChanged)).message
        for message in (mine, theirs):
            assert (message.ref, message.body) == (ref, "Furosémide 20 mg")
            assert message.edited_at is not None
        for engine in (alice.engine, bob.engine):
            assert [v.body for v in engine.versions(ref)] == ["Furosémide 40 mg"]
        assert [h.ref for h in bob.engine.search("furosemide 20").hits] == [ref]
        assert bob.engine.search("40").hits == ()

        # Bad requests change nothing.
        with pytest.raises(EngineError, match="needs a text"):
            await alice.engine.edit(ref, "  ")
        with pytest.raises(EngineError, match="only its sender"):
            await bob.engine.edit(ref, "Furosémide 400 mg")
        with pytest.raises(EngineError, match="only its sender"):
            await bob.engine.recall(ref)

        # Another user's edit or recall, past its engine's checks, is refused by receivers.
        target = Reference(device=ref.sender_device, id=ref.client_id)
        await forced_post(bob, room_id, EditContent(target=target, body="Furosémide 400 mg"))
        assert (await alice.next(RoomRuleBroken)).user_id == bob.engine.user_id
        await forced_post(bob, room_id, RecallContent(target=target))
        assert (await alice.next(RoomRuleBroken)).user_id == bob.engine.user_id
        assert alice.engine.messages(room_id)[0].body == "Furosémide 20 mg"

        await alice.engine.recall(ref)
        for watched in (alice, bob):
            gone = (await watched.next(MessageChanged)).message
            assert gone.ref == ref and gone.body is None and gone.recalled_at is not None
            assert watched.engine.versions(ref) == []
            assert watched.engine.search("furosemide").hits == ()
        with pytest.raises(EngineError, match="recalled"):
            await alice.engine.edit(ref, "Furosémide 20 mg")
    finally:
        for w in (alice, bob):
            await w.engine.stop()


@pytest.mark.asyncio
async def test_an_urgent_message_from_another_user_raises_an_alert(relay, tmp_path):
    custody = MemoryCustody()
    alice, bob = [await enroll(relay, tmp_path, name, custody) for name in ("alice", "bob")]
    try:
        seen: list[object] = []
        alice.engine.subscribe(seen.append)
        room_id = await alice.engine.create_room(RoomKind.DIRECT, "Avis", [bob.engine.user_id])
        await bob.next(RoomChanged)
        await alice.engine.send_text(room_id, "quand tu peux")
        urgent = await alice.engine.send_text(room_id, "K+ à 6,8", urgent=True)
        alert = await bob.next(UrgentReceived)
        assert (alert.message.ref, alert.room.id) == (urgent, room_id)
        assert [m.body for m in bob.engine.unacknowledged_urgent()] == ["K+ à 6,8"]
        assert not any(isinstance(e, UrgentReceived) for e in seen)  # one's own: no alert
    finally:
        for w in (alice, bob):
            await w.engine.stop()
