"""The room-details view-model against real engines and a real relay."""

from __future__ import annotations

import pytest

from app.client.events import RoomChanged
from app.ui.viewmodels.people import People
from app.ui.viewmodels.room_details import RoomDetails
from storage.custody import MemoryCustody
from storage.members import RoomRole
from storage.rooms import RoomKind
from tests.engine_support import enroll, until


@pytest.mark.asyncio
async def test_owner_manages_members_a_member_cannot_and_leaves(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "Alice Martin", custody)
    bob = await enroll(relay, tmp_path, "Bruno Petit", custody)
    carla = await enroll(relay, tmp_path, "Carla Roux", custody)
    try:
        room_id = await alice.engine.create_room(RoomKind.SERVICE, "Cardiologie",
                                                 [bob.engine.user_id])
        await bob.next(RoomChanged)
        people = People(alice.engine)
        await people.refresh()
        owner = RoomDetails(alice.engine, people, room_id)
        assert owner.can_manage and owner.name == "Cardiologie"
        assert [(m.name, m.role, m.me) for m in owner.members] == [
            ("Alice Martin", RoomRole.OWNER, True), ("Bruno Petit", RoomRole.MEMBER, False)]

        bob_people = People(bob.engine)
        await bob_people.refresh()
        member = RoomDetails(bob.engine, bob_people, room_id)
        assert not member.can_manage
        assert await member.add([carla.engine.user_id]) is False  # refused, nothing changed
        assert member.error_key == "details.error"
        assert len(member.members) == 2

        assert await owner.add([carla.engine.user_id]) is True
        assert {m.name for m in owner.members} == {"Alice Martin", "Bruno Petit", "Carla Roux"}
        assert await owner.set_role(bob.engine.user_id, RoomRole.ADMIN) is True
        assert await owner.set_retention(30) is True
        assert owner.retention_days == 30
        await until(lambda: member.can_manage and member.retention_days == 30)
        assert await member.remove(carla.engine.user_id) is True  # a moderator now
        await until(lambda: len(owner.members) == 2)

        assert await member.leave() is True
        assert member.left and bob.engine.rooms() == []
        await until(lambda: [m.name for m in owner.members] == ["Alice Martin"])
        owner.close()
        member.close()
    finally:
        for watched in (alice, bob, carla):
            await watched.engine.stop()


@pytest.mark.asyncio
async def test_documents_of_the_room_are_listed_newest_first(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "Alice Martin", custody)
    try:
        room_id = await alice.engine.create_room(RoomKind.GROUP, "Notes", [])
        first, second = tmp_path / "ecg.pdf", tmp_path / "bilan.txt"
        first.write_bytes(b"%PDF-1.4 synthetic")
        second.write_text("kaliemie 5,9", "utf-8")
        await alice.engine.send_file(room_id, first)
        await alice.engine.send_text(room_id, "pas un document")
        await alice.engine.send_file(room_id, second)
        people = People(alice.engine)
        await people.refresh()
        details = RoomDetails(alice.engine, people, room_id)
        assert [d.file_name for d in details.documents] == ["bilan.txt", "ecg.pdf"]
        assert {d.sender_name for d in details.documents} == {"Alice Martin"}
        details.close()
    finally:
        await alice.engine.stop()
