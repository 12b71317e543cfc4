"""What a UI asks the engine for: the room list, a room's messages page by page, search, and the
directory with its offline cache."""

from __future__ import annotations

import pytest

from app.client.engine import EngineError
from app.client.events import MessageReceived, RoomChanged
from storage.custody import MemoryCustody
from storage.rooms import RoomKind
from tests.engine_support import enroll


@pytest.mark.asyncio
async def test_room_list_pages_and_search(relay, tmp_path):
    custody = MemoryCustody()
    alice, bob = [await enroll(relay, tmp_path, name, custody) for name in ("alice", "bob")]
    try:
        ward = await alice.engine.create_room(RoomKind.SERVICE, "Cardiologie", [bob.engine.user_id])
        await bob.next(RoomChanged)
        direct = await alice.engine.create_room(RoomKind.DIRECT, "Avis", [bob.engine.user_id])
        await bob.next(RoomChanged)
        quiet = await alice.engine.create_room(RoomKind.GROUP, "Staff", [])
        for body in ("Lit 4 : ECG fait", "Lit 7 : troponine en cours"):
            await bob.engine.send_text(ward, body)
            await alice.next(MessageReceived)
        urgent = await bob.engine.send_text(ward, "Lit 7 : douleur thoracique", urgent=True)
        await alice.next(MessageReceived)
        await bob.engine.send_text(direct, "Tu passes à 15 h ?")
        await alice.next(MessageReceived)

        # The ward owes an acknowledgement: first, though the direct room is more recent.
        overview = alice.engine.room_overview()
        assert [o.room.id for o in overview] == [ward, direct, quiet]
        first, second, third = overview
        assert (first.unread, first.unacknowledged_urgent) == (3, 1)
        assert (first.last_preview, first.last_sender) == (
            "Lit 7 : douleur thoracique", bob.engine.user_id)
        assert (second.unread, second.unacknowledged_urgent) == (1, 0)
        assert (third.unread, third.last_preview, third.last_sender) == (0, None, None)
        assert first.last_activity < second.last_activity
        assert third.last_activity == third.room.created_at
        assert [o.unread for o in bob.engine.room_overview()] == [0, 0]  # his own messages

        await alice.engine.acknowledge(urgent)
        await alice.engine.mark_read(ward, urgent)
        overview = alice.engine.room_overview()
        assert [o.room.id for o in overview] == [direct, ward, quiet]
        assert [(o.unread, o.unacknowledged_urgent) for o in overview] == [(1, 0), (0, 0), (0, 0)]

        # Paging back through the ward's timeline.
        newest = alice.engine.messages(ward, limit=2)
        assert [m.body for m in newest] == ["Lit 7 : troponine en cours",
                                            "Lit 7 : douleur thoracique"]
        older = alice.engine.messages(ward, limit=2, before=newest[0].ref)
        assert [m.body for m in older] == ["Lit 4 : ECG fait"]
        assert alice.engine.messages(ward, limit=2, before=older[0].ref) == []
        with pytest.raises(EngineError, match="no message"):
            alice.engine.messages(direct, before=newest[0].ref)

        # Search ignores case and accents, and can keep to one room.
        hits = alice.engine.search("TROPONINE").hits
        assert [(h.room_id, h.ref) for h in hits] == [(ward, newest[0].ref)]
        assert alice.engine.search("lit", room_id=direct).hits == ()
        assert len(alice.engine.search("lit", room_id=ward).hits) == 3
        page = alice.engine.search("lit", limit=2)
        assert len(page.hits) == 2 and page.next_offset == 2
        assert len(alice.engine.search("lit", limit=2, offset=2).hits) == 1
    finally:
        for w in (alice, bob):
            await w.engine.stop()


@pytest.mark.asyncio
async def test_directory_online_then_from_the_cache(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    helene = relay.add_user("Hélène Dubois", "physician")
    relay.add_user("Marc Dubois", "nurse")
    try:
        found = await alice.engine.directory("Dubois")
        assert {e.display_name for e in found} == {"Hélène Dubois", "Marc Dubois"}
        relay.stop()
        offline = await alice.engine.directory("helene dub")
        assert [(e.user_id, e.display_name, e.profession) for e in offline] == [
            (helene, "Hélène Dubois", "physician")]
        assert await alice.engine.directory("Durand") == []  # never seen online
    finally:
        await alice.engine.stop()
