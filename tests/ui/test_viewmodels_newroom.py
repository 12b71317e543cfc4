"""The new-conversation view-model against real engines and a real relay."""

from __future__ import annotations

import pytest

from app.client.events import RoomChanged
from app.ui.viewmodels.newroom import NewRoom
from app.ui.viewmodels.people import People
from storage.custody import MemoryCustody
from storage.rooms import RoomKind
from tests.engine_support import enroll


@pytest.mark.asyncio
async def test_directory_search_ignores_accents_and_makes_a_direct_room_once(relay, tmp_path):
    custody = MemoryCustody()
    relay.add_user("Sophie Laurent", "physician", "--service", "Médecine interne")
    alice = await enroll(relay, tmp_path, "Alice Martin", custody)
    helene = await enroll(relay, tmp_path, "Hélène Dubois", custody)
    try:
        people = People(alice.engine)
        await people.refresh()
        model = NewRoom(alice.engine, people)
        await model.search("helene")
        assert [p.name for p in model.results] == ["Hélène Dubois"]
        await model.search("medecine int")  # a service, without its accent
        assert [p.name for p in model.results] == ["Sophie Laurent"]
        await model.search("infirmiere")  # a profession, in French
        assert [p.name for p in model.results] == ["Hélène Dubois"]  # enroll makes nurses
        await model.search("alice")  # oneself is never offered
        assert model.results == []

        assert await model.create() is None
        assert model.error_key == "newroom.error.pick_one"
        await model.search("dubois")
        model.toggle(model.results[0])
        room_id = await model.create()
        assert room_id is not None and model.error_key is None
        await helene.next(RoomChanged)
        [room] = helene.engine.rooms()
        assert (room.id, room.kind) == (room_id, RoomKind.DIRECT)
        again = NewRoom(alice.engine, people)
        await again.search("helene")
        again.toggle(again.results[0])
        assert await again.create() == room_id  # the existing direct room, not a second one
        assert len(alice.engine.rooms()) == 1
    finally:
        await alice.engine.stop()
        await helene.engine.stop()


@pytest.mark.asyncio
async def test_group_and_patient_rooms_need_what_they_need(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "Alice Martin", custody)
    bob = await enroll(relay, tmp_path, "Bruno Petit", custody)
    carla = await enroll(relay, tmp_path, "Carla Roux", custody)
    try:
        model = NewRoom(alice.engine, People(alice.engine))
        await model.search("bruno")
        model.toggle(model.results[0])
        await model.search("carla")
        model.toggle(model.results[0])
        assert list(model.picked) == [carla.engine.user_id]  # direct: picking replaces
        model.choose_kind(RoomKind.GROUP)
        await model.search("bruno")
        model.toggle(model.results[0])
        assert set(model.picked) == {bob.engine.user_id, carla.engine.user_id}
        group_id = await model.create()
        assert group_id is not None
        state = alice.engine.room_state(group_id)
        assert (state.kind, state.name) == (RoomKind.GROUP, "Carla Roux, Bruno Petit")

        model.choose_kind(RoomKind.PATIENT)
        model.name = "Mme Lefèvre"
        assert await model.create() is None
        assert model.error_key == "newroom.error.patient"
        typed = model.picker
        typed.patient_family_name, typed.patient_ins = "Lefèvre", "248037512345678"
        typed.patient_birth_date = "1948-13-40"
        assert await model.create() is None
        assert model.error_key == "newroom.error.patient_invalid"
        assert model.name == "Mme Lefèvre"  # nothing typed is lost
        rooms_before = len(alice.engine.rooms())
        assert rooms_before == 1
        typed.patient_birth_date, typed.patient_given_names = "1948-03-02", "Marie Anne"
        patient_id = await model.create()
        assert patient_id is not None
        patient = alice.engine.room_state(patient_id).patient
        assert patient is not None
        assert (patient.family_name, patient.given_names) == ("LEFÈVRE", ("Marie", "Anne"))
        assert [i.value for i in patient.identifiers] == ["248037512345678"]
        assert str(patient.birth_date) == "1948-03-02"

        model.choose_kind(RoomKind.SERVICE)
        model.name = "  "
        assert await model.create() is None
        assert model.error_key == "newroom.error.name"
    finally:
        for watched in (alice, bob, carla):
            await watched.engine.stop()
