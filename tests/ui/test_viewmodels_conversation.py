"""The conversation list and conversation view-models against real engines and a real relay."""

from __future__ import annotations

import pytest

from app.client.events import MessageReceived, ReceiptReceived, RoomChanged
from app.ui.viewmodels.conversation import PAGE, Bubble, Conversation, DaySeparator
from app.ui.viewmodels.conversation_list import ConversationList
from app.ui.viewmodels.people import People
from storage.custody import MemoryCustody
from storage.rooms import RoomKind
from storage.status import MessageStatus
from tests.engine_support import enroll, pair, until
from tests.forged_client import forced_commit


def bubbles(conversation: Conversation) -> list[Bubble]:
    return [item for item in conversation.timeline if isinstance(item, Bubble)]


@pytest.mark.asyncio
async def test_two_users_chat_and_see_read_and_acknowledged(relay, tmp_path):
    relay.add_user("Hélène Dubois", "physician")
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "Alice Martin", custody)
    bob = await enroll(relay, tmp_path, "Bruno Petit", custody)
    try:
        bob_id = bob.engine.user_id
        room_id = await alice.engine.create_room(RoomKind.SERVICE, "Cardiologie", [bob_id])
        await bob.next(RoomChanged)
        people = People(bob.engine)
        await people.refresh()
        assert people.get(alice.engine.user_id).name == "Alice Martin"
        assert people.get(alice.engine.user_id).profession == "nurse"

        at_alice = Conversation(alice.engine, People(alice.engine), room_id)
        at_alice.draft = "   "
        assert await at_alice.send() is False  # nothing to send: nothing sent
        at_alice.draft, at_alice.urgent = "Patient lit 12 désature", True
        assert await at_alice.send() is True
        assert (at_alice.draft, at_alice.urgent) == ("", False)
        [mine] = bubbles(at_alice)
        assert mine.mine and mine.urgent and not mine.can_acknowledge

        await bob.next(MessageReceived)
        listing = ConversationList(bob.engine)
        [row] = listing.rows
        assert (row.name, row.kind, row.icon) == ("Cardiologie", RoomKind.SERVICE, "LOCAL_HOSPITAL")
        assert (row.preview, row.unread, row.urgent) == ("Patient lit 12 désature", 1, True)

        at_bob = Conversation(bob.engine, people, room_id)
        assert isinstance(at_bob.timeline[0], DaySeparator)
        [theirs] = bubbles(at_bob)
        assert (theirs.sender_name, theirs.mine, theirs.can_acknowledge) == (
            "Alice Martin", False, True)
        await at_bob.mark_read()
        listing.refresh()
        assert listing.rows[0].unread == 0
        await until(lambda: bubbles(at_alice)[0].status is MessageStatus.READ)

        await at_bob.acknowledge(theirs.ref)
        assert not bubbles(at_bob)[0].can_acknowledge
        listing.refresh()
        assert listing.rows[0].urgent is False
        await until(lambda: bubbles(at_alice)[0].status is MessageStatus.ACKNOWLEDGED)
        assert any(isinstance(e, ReceiptReceived) for e in _drain(alice))
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


@pytest.mark.asyncio
async def test_list_pins_urgent_rooms_filters_and_searches(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    bob = await enroll(relay, tmp_path, "bob", custody)
    try:
        ids = {}
        for kind, name in [(RoomKind.PATIENT, "Mme Lefèvre"), (RoomKind.GROUP, "Garde"),
                           (RoomKind.PROJECT, "Qualité")]:
            ids[name] = await alice.engine.create_room(kind, name, [bob.engine.user_id])
            await bob.next(RoomChanged)
        await alice.engine.send_text(ids["Mme Lefèvre"], "Allergie pénicilline", urgent=True)
        await alice.engine.send_text(ids["Garde"], "Relève à 19h")
        await alice.engine.send_text(ids["Qualité"], "Réunion jeudi")
        listing = ConversationList(bob.engine)
        await until(lambda: (listing.refresh(), sum(r.unread for r in listing.rows))[1] == 3)
        # urgent first even though it is the oldest; then newest first
        assert [r.name for r in listing.rows] == ["Mme Lefèvre", "Qualité", "Garde"]
        listing.filter(RoomKind.GROUP)
        assert [r.name for r in listing.rows] == ["Garde"]
        listing.filter(None, "lefe")  # no accent, no case, a word's start
        assert [r.name for r in listing.rows] == ["Mme Lefèvre"]
        listing.filter(None, "fevre")
        assert listing.rows == []
        listing.filter(None, "penicil")  # found in a message: its passage is the preview
        [found] = listing.rows
        assert found.name == "Mme Lefèvre" and "pénicilline" in (found.preview or "")
        listing.filter(RoomKind.GROUP, "penicil")
        assert listing.rows == []
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


@pytest.mark.asyncio
async def test_older_pages_load_on_demand(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    try:
        room_id = await alice.engine.create_room(RoomKind.GROUP, "Notes", [])
        total = PAGE + 7
        for i in range(total):
            await alice.engine.send_text(room_id, f"note {i}")
        conversation = Conversation(alice.engine, People(alice.engine), room_id)
        shown = [b.body for b in bubbles(conversation)]
        assert shown == [f"note {i}" for i in range(7, total)]
        assert conversation.has_older
        assert conversation.load_older() == 7
        assert [b.body for b in bubbles(conversation)][:2] == ["note 0", "note 1"]
        assert not conversation.has_older
        assert conversation.load_older() == 0
    finally:
        await alice.engine.stop()


def _drain(watched) -> list:  # type: ignore[no-untyped-def]
    events = []
    while not watched.events.empty():
        events.append(watched.events.get_nowait())
    return events


@pytest.mark.asyncio
async def test_a_room_this_device_fell_out_of_step_with_says_so(relay, tmp_path):
    custody = MemoryCustody()
    alice, bob, room_id = await pair(relay, tmp_path, custody, RoomKind.GROUP, "Réa",
                                     ("Alice Martin", "Bruno Petit"))
    try:
        at_alice = Conversation(alice.engine, People(alice.engine), room_id)
        redrawn: list[bool] = []
        at_alice.observe(lambda: redrawn.append(at_alice.unreadable))
        assert not at_alice.unreadable
        # Bob, a plain member, renames the room past his engine's checks: the blind relay
        # takes the commit, Alice's engine refuses it, and what Bob says next is beyond her.
        await forced_commit(bob, room_id, name="Renommée")
        await bob.engine.send_text(room_id, "après le renommage")
        await until(lambda: at_alice.unreadable)
        assert True in redrawn  # the view was told, so its warning shows
        assert bubbles(at_alice) == []
        [row] = ConversationList(alice.engine).rows  # and the room list marks the room
        assert row.unreadable and not ConversationList(bob.engine).rows[0].unreadable
    finally:
        await alice.engine.stop()
        await bob.engine.stop()
