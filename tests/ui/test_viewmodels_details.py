"""The room-details view-model against real engines and a real relay."""

from __future__ import annotations

import pytest

from app.client.events import RoomChanged
from app.ui.i18n import Translator
from app.ui.room_details_view import RoomDetailsView
from app.ui.viewmodels.conversation import Conversation
from app.ui.viewmodels.newroom import NewRoom
from app.ui.viewmodels.people import People
from app.ui.viewmodels.room_details import RoomDetails
from storage.custody import MemoryCustody
from storage.members import RoomRole
from storage.rooms import PatientContext, PatientIdentifier, RoomKind
from tests.engine_support import Watched, enroll, until
from tests.fhir_support import encounter, location, patient, unique_digits
from tests.relay_harness import free_port
from tests.ui.test_viewmodels_newroom_fhir import environment

ADMITTED = PatientContext(
    identifiers=(PatientIdentifier(system="urn:liaison:ipp", value="IPP-4411"),),
    family_name="DUPONT", given_names=("Jean",))


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


async def patient_room(alice: Watched, bob: Watched) -> str:
    """A patient room about ADMITTED, owned by Alice, Bob a plain member who has joined it."""
    room_id = await alice.engine.create_room(RoomKind.PATIENT, "Chambre 12",
                                             [bob.engine.user_id], patient=ADMITTED)
    await bob.next(RoomChanged)
    return room_id


def view_of(model: RoomDetails) -> RoomDetailsView:
    return RoomDetailsView(model, NewRoom(model._engine, People(model._engine), {}),
                           Translator("en"), lambda *_a: None, lambda: None, lambda: None,
                           lambda: None)


@pytest.mark.asyncio
async def test_an_owner_relinks_a_patient_room_typed_a_member_cannot_and_unlinks(relay,
                                                                                 tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "Alice Martin", custody)
    bob = await enroll(relay, tmp_path, "Bruno Petit", custody)
    try:
        room_id = await patient_room(alice, bob)
        bob_sees = Conversation(bob.engine, People(bob.engine), room_id)
        owner = RoomDetails(alice.engine, People(alice.engine), room_id, {})
        member = RoomDetails(bob.engine, People(bob.engine), room_id, {})
        assert owner.patient is not None and owner.patient.name == "DUPONT Jean"
        assert owner.can_change_patient and not member.can_change_patient
        owner_view, member_view = view_of(owner), view_of(member)
        assert owner_view._patient_section.visible and owner_view._change.visible
        assert owner_view._unlink.visible
        assert member_view._patient_section.visible  # the patient, shown to every member
        assert not member_view._change.visible and not member_view._unlink.visible

        member.picker.patient_family_name, member.picker.patient_ins = "Moreau", "1" * 15
        assert await member.change_patient() is False  # the engine checks roles too
        assert member.error_key == "details.error"
        assert await member.unlink_patient() is False
        assert bob.engine.room_state(room_id).patient == ADMITTED

        owner.picker.patient_family_name = "Moreau"
        assert await owner.change_patient() is False  # no INS nor IPP yet
        assert owner.error_key == "newroom.error.patient"
        owner.picker.patient_ins, owner.picker.patient_birth_date = "255087512345678", "1955-13-01"
        assert await owner.change_patient() is False
        assert owner.error_key == "newroom.error.patient_invalid"
        assert owner.picker.patient_family_name == "Moreau"  # nothing typed is lost
        owner.picker.patient_birth_date, owner.picker.patient_given_names = "1955-08-01", "Léa"
        assert await owner.change_patient() is True, owner.error_detail
        assert owner.error_key is None and owner.patient is not None
        assert owner.patient.name == "MOREAU Léa"
        await until(lambda: bob_sees.patient is not None and bob_sees.patient.name == "MOREAU Léa")
        assert bob_sees.patient is not None
        assert (bob_sees.patient.identifier, str(bob_sees.patient.birth_date)) == (
            "255087512345678", "1955-08-01")
        await until(lambda: member.patient is not None and member.patient.name == "MOREAU Léa")

        assert await owner.unlink_patient() is True
        assert owner.patient is None and not owner_view._unlink.visible
        await until(lambda: bob_sees.patient is None)
        state = bob.engine.room_state(room_id)
        assert (state.kind, state.patient) == (RoomKind.PATIENT, None)
        for watched in (owner_view, member_view, bob_sees):
            watched.close()
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


@pytest.mark.asyncio
async def test_an_owner_relinks_a_patient_room_to_a_patient_from_the_record(relay, fhir_base,
                                                                            tmp_path):
    ins, family = "2" + unique_digits(12), "Garnier-" + unique_digits(5)
    found = patient(fhir_base, ins=ins, family=family, given="Paul", birth_date="1961-02-03")
    ward = location(fhir_base, "Pneumologie", "wa")
    bed = location(fhir_base, "Lit 3", "bd", part_of=ward["id"])
    encounter(fhir_base, found["id"], "in-progress", "2026-11-25T08:00:00+01:00", [bed["id"]])
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "Alice Martin", custody)
    bob = await enroll(relay, tmp_path, "Bruno Petit", custody)
    try:
        room_id = await patient_room(alice, bob)
        bob_sees = Conversation(bob.engine, People(bob.engine), room_id)

        nowhere = f"http://127.0.0.1:{free_port()}/fhir"  # nothing listens there
        offline = RoomDetails(alice.engine, People(alice.engine), room_id, environment(nowhere))
        offline.picker.record_ins = ins
        assert await offline.search_patient() is False
        assert (offline.error_key, offline.picker.record_ins, offline.busy) == (
            "newroom.error.record", ins, False)
        assert offline.error_detail
        assert await offline.change_patient() is False  # nobody chosen: the link stays
        assert offline.error_key == "newroom.error.record_pick"
        assert alice.engine.room_state(room_id).patient == ADMITTED
        offline.close()

        owner = RoomDetails(alice.engine, People(alice.engine), room_id, environment(fhir_base))
        owner.picker.record_ins = ins
        assert await owner.search_patient() is True, owner.error_detail
        [candidate] = owner.picker.candidates
        view = view_of(owner)
        assert not view._relink_form.candidates.controls[0].selected
        owner.choose_patient(candidate)
        assert view._relink_form.candidates.controls[0].selected
        assert await owner.change_patient() is True, owner.error_detail
        await until(lambda: bob_sees.patient is not None
                    and bob_sees.patient.name == f"{family.upper()} Paul")
        assert bob_sees.patient is not None
        assert (bob_sees.patient.identifier, bob_sees.patient.identifier_is_ins,
                bob_sees.patient.ward, bob_sees.patient.bed) == (ins, True, "Pneumologie",
                                                                 "Lit 3")
        view.close()
        bob_sees.close()
    finally:
        await alice.engine.stop()
        await bob.engine.stop()
