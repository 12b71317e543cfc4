"""Patient rooms from the record: a search result and its stay made into the room's patient
context (without I/O), then real engines and the `liaison` CLI against the real relay and a
real FHIR server; the relay's files are scanned for the patient's identity afterwards."""

from __future__ import annotations

import base64
import json
from datetime import date

import httpx
import pytest

from app.client.events import RoomChanged
from app.client.patient_rooms import PatientQuery, context, patient_context
from record import FhirClient, FhirConfig, FhirError
from record.config import INS_TEST_SYSTEM
from record.patients import PatientSummary, Stay
from storage.custody import MemoryCustody
from storage.rooms import PatientContext, PatientIdentifier, RoomKind
from tests.engine_support import enroll, until
from tests.fhir_support import (
    IPP_SYSTEM,
    encounter,
    location,
    patient,
    unique_digits,
)
from tests.test_bridge_feed import scan
from tests.test_cli_client import liaison
from tests.test_cli_rooms import failing

SUMMARY = PatientSummary(id="p1", ins="2480912345678", ins_system=INS_TEST_SYSTEM,
                         ipp="00123456", family="Lefèvre", given=["Hélène", "Marie"],
                         birth_date="1948-09-12", gender="female")
STAY = Stay(encounter="Encounter/e1", status="in-progress", start="2026-11-25",
            ward="Cardiologie", bed="Lit 12-B")


def ins() -> str:
    return "2" + unique_digits(12)


# -- without I/O -----------------------------------------------------------------------------
def test_a_search_result_and_its_stay_make_the_rooms_patient_context():
    assert context(SUMMARY, STAY, IPP_SYSTEM) == PatientContext(
        identifiers=(PatientIdentifier(system=INS_TEST_SYSTEM, value="2480912345678"),
                     PatientIdentifier(system=IPP_SYSTEM, value="00123456")),
        family_name="Lefèvre", given_names=("Hélène", "Marie"), birth_date=date(1948, 9, 12),
        encounter="Encounter/e1", ward="Cardiologie", bed="Lit 12-B")
    bare = context(SUMMARY.model_copy(update={"birth_date": "1948"}), None, None)
    assert (bare.identifiers, bare.birth_date, bare.encounter, bare.ward) == (
        (PatientIdentifier(system=INS_TEST_SYSTEM, value="2480912345678"),), None, None, None)


def test_a_patient_the_room_could_not_name_again_is_refused():
    with pytest.raises(FhirError, match="neither INS nor IPP"):
        context(SUMMARY.model_copy(update={"ins": None}), STAY, None)
    with pytest.raises(FhirError, match="no family name"):
        context(SUMMARY.model_copy(update={"family": None}), STAY, IPP_SYSTEM)


# -- engines, relay, FHIR server -------------------------------------------------------------
@pytest.mark.asyncio
async def test_members_see_the_patient_from_the_record_and_the_relay_does_not(
        relay, fhir_base, tmp_path):
    first_ins, second_ipp = ins(), unique_digits(8)
    family = "Lefèvre-" + unique_digits(5)
    first = patient(fhir_base, ins=first_ins, family=family, birth_date="1948-09-12")
    second = patient(fhir_base, ipp=second_ipp, family="Gauthier", given="Zoé",
                     birth_date="1937-01-30")
    ward = location(fhir_base, "Cardiologie — USIC", "wa")
    bed = location(fhir_base, "Lit 12-B", "bd", part_of=ward["id"])
    stay = encounter(fhir_base, first["id"], "in-progress", "2026-11-25T16:30:00+01:00",
                     [bed["id"]])
    patient(fhir_base, family=family, birth_date="1990-02-03")  # two of the same name and
    patient(fhir_base, family=family, birth_date="1990-02-03")  # birth date: ambiguous
    custody = MemoryCustody()
    alice, bob = [await enroll(relay, tmp_path, name, custody) for name in ("alice", "bob")]
    try:
        async with FhirClient(FhirConfig(base_url=fhir_base, ipp_system=IPP_SYSTEM)) as fhir:
            found = await patient_context(fhir, PatientQuery(ins=first_ins))
            moved = await patient_context(fhir, PatientQuery(ipp=second_ipp))
            with pytest.raises(FhirError, match=r"2 patients .* name and birth date"):
                await patient_context(fhir, PatientQuery(family=family,
                                                         birth_date=date(1990, 2, 3)))
            with pytest.raises(FhirError, match=r"no patients .* INS"):
                await patient_context(fhir, PatientQuery(ins=ins()))
        assert (found.family_name, found.encounter, found.ward, found.bed) == (
            family, f"Encounter/{stay['id']}", "Cardiologie — USIC", "Lit 12-B")

        room = await alice.engine.create_room(RoomKind.PATIENT, "USIC lit 12",
                                              [bob.engine.user_id], patient=found)
        joined = (await bob.next(RoomChanged)).room
        assert (joined.id, joined.patient) == (room, found)

        await alice.engine.update_room(room, patient=moved)  # the link changed, for all
        await until(lambda: bob.engine.room_state(room).patient == moved)
        assert moved.identifiers == (PatientIdentifier(system=IPP_SYSTEM, value=second_ipp),)
        assert (moved.family_name, moved.birth_date) == ("Gauthier", date(1937, 1, 30))
    finally:
        await alice.engine.stop()
        await bob.engine.stop()
    relay.stop()  # the WAL folded into the database: both scanned
    markers = [family, first_ins, "1948-09-12", "Gauthier", second_ipp, "1937-01-30",
               "Cardiologie — USIC", first["id"], second["id"]]
    assert (relay.data / "relay.db").exists()
    assert scan(relay.data, markers) == []


def test_patient_rooms_and_archives_through_the_cli(relay, fhir_base, tmp_path):
    number, ipp = ins(), unique_digits(8)
    who = patient(fhir_base, ins=number, ipp=ipp, family="Pérez", given="Anaïs",
                  birth_date="1961-04-07")
    stay = encounter(fhir_base, who["id"], "arrived", "2026-11-28T08:00:00+01:00")
    other = patient(fhir_base, ins=ins(), family="Roussel", birth_date="1955-12-01")
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    ids = {}
    for profile, name in ((alice, "Alice Martin"), (bob, "Bob Durand")):
        ids[profile] = relay.add_user(name, "physician")
        liaison(profile, "enroll", "--relay", relay.url, "--code", relay.invite(ids[profile]))
    fhir = ["--fhir", fhir_base, "--ipp-system", IPP_SYSTEM]

    [line] = liaison(alice, "patient", "search", *fhir, "--ipp", ipp).splitlines()
    assert line.split() == ["PÉREZ", "Anaïs", "born", "1961-04-07", "INS", number, "IPP", ipp,
                            f"Patient/{who['id']}"]
    assert "no patient matches" in liaison(alice, "patient", "search", *fhir, "--ins", ins())
    assert "add --fhir" in failing(alice, "room", "create", "--kind", "patient", "--name", "X",
                                   "--patient-ins", number)
    assert "no patients in the record match this INS" in failing(
        alice, "room", "create", "--kind", "patient", "--name", "X", *fhir,
        "--patient-ins", ins())

    room = liaison(alice, "room", "create", "--kind", "patient", "--name", "Box 4",
                   "--member", ids[bob], *fhir, "--patient-ins", number).split()[-1]
    liaison(bob, "sync", "--wait", "3")
    assert liaison(bob, "room", "show", "--", room).splitlines() == [
        "patient room 'Box 4'",
        f"patient: PÉREZ Anaïs  born 1961-04-07  {INS_TEST_SYSTEM}|{number}  "
        f"{IPP_SYSTEM}|{ipp}  Encounter/{stay['id']}"]

    assert "owners and moderators" in failing(bob, "room", "link-patient", *fhir, "--patient-id",
                                              f"Patient/{other['id']}", "--", room)
    liaison(alice, "room", "link-patient", *fhir, "--patient-id", f"Patient/{other['id']}",
            "--", room)
    liaison(bob, "sync", "--wait", "3")
    assert "patient: ROUSSEL Hélène  born 1955-12-01" in liaison(bob, "room", "show", "--", room)
    liaison(alice, "room", "link-patient", *fhir, "--patient-ins", number, "--", room)

    said = liaison(alice, "send", "--", room, "Patiente installée, ECG fait").split()[-1]
    liaison(alice, "send", "--", room, "pas à archiver")
    out = liaison(alice, "archive", "--fhir", fhir_base, "--message", said, "--", room)
    assert out.startswith("archived 1 message(s) to the record: DocumentReference/")
    again = liaison(alice, "archive", "--fhir", fhir_base, "--message", said, "--", room)
    assert "(already there: stored once)" in again and again.split()[-2:] == out.split()[-2:]
    document_reference = out.split()[-2]
    stored = httpx.get(f"{fhir_base}/{document_reference}", timeout=30).json()
    assert stored["subject"]["reference"] == f"Patient/{who['id']}"
    transcript = base64.b64decode(stored["content"][0]["attachment"]["data"])
    assert "Patiente installée, ECG fait".encode("cp1252") in transcript
    assert b"pas \xe0 archiver" not in transcript

    liaison(bob, "sync", "--wait", "3")
    notes = [m for m in json.loads(liaison(bob, "messages", "--json", "--", room))
             if m["body"] and m["body"].startswith("archived")]
    assert [n["sender"] for n in notes] == [ids[alice]] * 2
    assert all(document_reference in n["body"] for n in notes)
    assert "no message nope" in failing(alice, "archive", "--fhir", fhir_base, "--message",
                                        "nope", "--", room)
    relay.stop()
    markers = ["Pérez", "PÉREZ", "Anaïs", number, ipp, "1961-04-07", "Roussel", "1955-12-01",
               "ECG fait"]
    assert scan(relay.data, markers) == []
