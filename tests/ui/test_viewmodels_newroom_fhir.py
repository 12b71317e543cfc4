"""The new-conversation view-model's patient search: a real FHIR server (sekmet), the real
relay and real engines; the record's configuration comes from the environment it is given."""

from __future__ import annotations

import flet as ft
import pytest

from app.client.events import RoomChanged
from app.ui.i18n import Translator
from app.ui.newroom_view import NewRoomView
from app.ui.viewmodels.newroom import NewRoom
from app.ui.viewmodels.people import People
from record.config import INS_TEST_SYSTEM
from record.environment import config_from_environment
from storage.custody import MemoryCustody
from storage.rooms import PatientIdentifier, RoomKind
from tests.engine_support import enroll
from tests.fhir_support import IPP_SYSTEM, encounter, location, patient, unique_digits
from tests.relay_harness import free_port


def environment(base: str) -> dict[str, str]:
    return {"LIAISON_FHIR_BASE_URL": base, "LIAISON_FHIR_IPP_SYSTEM": IPP_SYSTEM}


@pytest.mark.asyncio
async def test_a_patient_found_by_ins_makes_a_room_every_member_sees(relay, fhir_base,
                                                                     tmp_path):
    ins, family = "2" + unique_digits(12), "Lefèvre-" + unique_digits(5)
    found = patient(fhir_base, ins=ins, family=family, given="Hélène", birth_date="1948-09-12")
    ward = location(fhir_base, "Cardiologie — USIC", "wa")
    bed = location(fhir_base, "Lit 12-B", "bd", part_of=ward["id"])
    stay = encounter(fhir_base, found["id"], "in-progress", "2026-11-25T16:30:00+01:00",
                     [bed["id"]])
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "Alice Martin", custody)
    bob = await enroll(relay, tmp_path, "Bruno Petit", custody)
    try:
        model = NewRoom(alice.engine, People(alice.engine), environment(fhir_base))
        model.choose_kind(RoomKind.PATIENT)
        await model.search("bruno")
        model.toggle(model.results[0])
        assert await model.create() is None  # no patient chosen yet
        assert model.error_key == "newroom.error.record_pick"

        model.picker.record_ins = ins
        await model.search_patient()
        assert model.error_key is None
        [candidate] = model.picker.candidates
        assert (candidate.patient.family, candidate.patient.ins, candidate.patient.birth_date) \
            == (family, ins, "1948-09-12")
        assert candidate.stay is not None
        assert (candidate.stay.ward, candidate.stay.bed) == ("Cardiologie — USIC", "Lit 12-B")
        view = NewRoomView(model, Translator("en"), lambda *_a: None, lambda _r: None,
                           lambda: None, lambda: None)
        [tile] = view._patient.candidates.controls
        assert isinstance(tile, ft.ListTile) and isinstance(tile.subtitle, ft.Text)
        assert tile.subtitle.value == (f"born 1948-09-12 · INS {ins} · Cardiologie — USIC, "
                                       "Lit 12-B")
        model.choose_patient(candidate)
        assert model.name == f"{family.upper()} Hélène"
        assert view._name.value == model.name and view._patient.candidates.controls[0].selected
        view.close()
        room_id = await model.create()
        assert room_id is not None, (model.error_key, model.error_detail)

        joined = (await bob.next(RoomChanged)).room
        for seen in (alice.engine.room_state(room_id).patient, joined.patient):
            assert seen is not None
            assert (seen.family_name, seen.given_names, seen.ward, seen.bed, seen.encounter) \
                == (family, ("Hélène",), "Cardiologie — USIC", "Lit 12-B",
                    f"Encounter/{stay['id']}")
            assert seen.identifiers == (PatientIdentifier(system=INS_TEST_SYSTEM, value=ins),)
        assert (joined.id, joined.kind) == (room_id, RoomKind.PATIENT)
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


@pytest.mark.asyncio
async def test_nobody_found_and_an_unreachable_record_say_so_and_keep_the_input(
        relay, fhir_base, tmp_path):
    alice = await enroll(relay, tmp_path, "Alice Martin", MemoryCustody())
    try:
        model = NewRoom(alice.engine, People(alice.engine), environment(fhir_base))
        model.picker.record_family = "Personne-" + unique_digits(6)
        model.picker.record_birth_date = "1970-01-01"
        await model.search_patient()
        assert (model.error_key, model.picker.candidates) == ("newroom.error.record_none", [])

        model.picker.record_birth_date = "1970-13-01"  # not a date: said before the record
        await model.search_patient()
        assert model.error_key == "newroom.error.record_query"

        nowhere = f"http://127.0.0.1:{free_port()}/fhir"  # nothing listens there
        offline = NewRoom(alice.engine, People(alice.engine), environment(nowhere))
        offline.choose_kind(RoomKind.PATIENT)
        offline.name, offline.picker.record_ins = "USIC lit 12", "248091234567801"
        await offline.search_patient()
        assert offline.error_key == "newroom.error.record"
        assert offline.error_detail  # what failed, for the message
        assert (offline.name, offline.picker.record_ins, offline.busy) == (
            "USIC lit 12", "248091234567801", False)
        assert await offline.create() is None  # nothing chosen: no room made
        assert alice.engine.rooms() == []
    finally:
        await alice.engine.stop()


def test_the_record_configuration_comes_from_the_environment():
    assert config_from_environment({}) is None  # the typed form, as before
    config = config_from_environment({"LIAISON_FHIR_BASE_URL": "https://dpi.example/fhir",
                                      "LIAISON_FHIR_AUTH": "bearer",
                                      "LIAISON_FHIR_TOKEN": "jeton"})
    assert config is not None and config.auth.kind == "bearer"
    with pytest.raises(ValueError, match="LIAISON_FHIR_TOKEN"):
        config_from_environment({"LIAISON_FHIR_BASE_URL": "https://dpi.example/fhir",
                                 "LIAISON_FHIR_AUTH": "bearer"})
    with pytest.raises(ValueError, match="LIAISON_FHIR_AUTH"):
        config_from_environment({"LIAISON_FHIR_BASE_URL": "https://dpi.example/fhir",
                                 "LIAISON_FHIR_AUTH": "basic"})
