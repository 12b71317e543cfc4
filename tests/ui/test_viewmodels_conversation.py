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

        # Alice owns the room: she may open it again, as a new room without Bob, whose
        # rename her device refused.
        at_bob = Conversation(bob.engine, People(bob.engine), room_id)
        assert at_alice.can_reopen and not at_bob.can_reopen  # Bob reads the room
        new_id = await at_alice.reopen()
        assert new_id is not None and new_id != room_id and at_alice.error is None
        assert [m.user_id for m in alice.engine.members(new_id)] == [alice.engine.user_id]
        assert not Conversation(alice.engine, People(alice.engine), new_id).unreadable
        assert await at_bob.reopen() is None and at_bob.error is not None  # nothing to reopen
        assert at_alice.replacement is not None and at_alice.replacement.id == new_id
        assert [r.replaced for r in ConversationList(alice.engine).rows
                if r.room_id == room_id] == [True]
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


@pytest.mark.asyncio
async def test_a_plain_member_is_led_from_an_unreadable_room_to_its_replacement(relay, tmp_path):
    """Carol may not open the room again herself; once Alice, its owner, has, Carol's old room
    says where the conversation went and takes her there."""
    custody = MemoryCustody()
    alice, bob, carol = [await enroll(relay, tmp_path, name, custody)
                         for name in ("alice", "bob", "carol")]
    try:
        room_id = await alice.engine.create_room(
            RoomKind.GROUP, "Réa", [bob.engine.user_id, carol.engine.user_id])
        for w in (bob, carol):
            await w.next(RoomChanged)
        at_carol = Conversation(carol.engine, People(carol.engine), room_id)
        await forced_commit(bob, room_id, name="Renommée")
        await bob.engine.send_text(room_id, "après le renommage")
        await until(lambda: at_carol.unreadable and alice.engine.unreadable(room_id))
        assert at_carol.replacement is None and not at_carol.can_reopen  # a plain member
        assert [r.replaced for r in ConversationList(carol.engine).rows] == [False]

        new_id = await alice.engine.recreate_room(room_id)
        await until(lambda: at_carol.replacement is not None)
        assert at_carol.replacement is not None and at_carol.replacement.name == "Réa"
        assert at_carol.can_reopen and await at_carol.reopen() == new_id
        assert at_carol.error is None
        rows = {r.room_id: r for r in ConversationList(carol.engine).rows}
        assert rows[room_id].replaced and not rows[new_id].replaced
        at_carol.draft = "encore ici ?"
        assert not await at_carol.send()  # the draft stays, and the error says where to write
        assert at_carol.draft == "encore ici ?" and new_id in (at_carol.error or "")
    finally:
        for w in (alice, bob, carol):
            await w.engine.stop()
