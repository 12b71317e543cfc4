"""Archiving a patient room to the record: the Bundle built without I/O (checked with the R4B
models), the PDF transcript, then real engines on the real relay exporting to a real FHIR
server (tests/fhir_support), retried, refused, and seen by the room's members."""

from __future__ import annotations

import base64
import re
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from app.client.engine import Engine, EngineError
from app.client.events import MessageReceived, RoomChanged
from record import FhirConfig, FhirError, pdf
from record import archive as ar
from record.config import INS_TEST_SYSTEM
from storage.custody import MemoryCustody
from storage.messages import MessageKind, MessageRef
from storage.rooms import PatientContext, PatientIdentifier, RoomKind
from tests.engine_support import Watched, until
from tests.fhir_support import IPP_SYSTEM, RPPS_SYSTEM, create, encounter, patient, unique_digits
from tests.relay_harness import RelayProcess

PATIENT = PatientContext(
    identifiers=(PatientIdentifier(system=INS_TEST_SYSTEM, value="2480912345678"),
                 PatientIdentifier(system=IPP_SYSTEM, value="00123456")),
    family_name="Lefèvre", given_names=("Hélène",), birth_date=date(1948, 9, 12),
    encounter="Encounter/sejour-1", ward="Cardiologie", bed="12-B")
AT = datetime(2026, 11, 28, 14, 5, tzinfo=UTC)


def export(*messages: ar.ArchivedMessage, author: ar.Author | None = None) -> ar.Export:
    return ar.Export(room_id="room-1", room_name="Mme Lefèvre — USIC", patient=PATIENT,
                     author=author or ar.Author(display="Dr Élise Martin", rpps="10101010101"),
                     at=AT, messages=messages)


TEXT = ar.ArchivedMessage(ref="dev-a/m1", sender="Dr Élise Martin", sent=AT,
                          text="Échographie : FEVG 45 %, à revoir demain")
SCAN = ar.ArchivedMessage(ref="dev-b/m2", sender="Bob Durand", sent=AT, text="compte rendu",
                          document=ar.ArchivedDocument(name="écho.pdf",
                                                       media_type="application/pdf",
                                                       data=b"%PDF-1.4 synthetic"))


def resources(bundle: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for entry in bundle["entry"]:
        found.setdefault(entry["resource"]["resourceType"], []).append(entry)
    return found


# -- the Bundle, without I/O -----------------------------------------------------------------
def test_the_bundle_is_a_valid_transaction_of_conditional_creates():
    bundle = ar.transaction(export(TEXT, SCAN))
    Bundle.model_validate(bundle)  # R4B, every resource included
    by_type = resources(bundle)
    assert sorted(by_type) == ["Binary", "Communication", "DocumentReference"]
    [doc], [binary] = by_type["DocumentReference"], by_type["Binary"]
    [comm] = by_type["Communication"]
    key = ar.export_identifier("room-1", ["dev-a/m1", "dev-b/m2"])
    assert doc["request"] == {"method": "POST", "url": "DocumentReference",
                              "ifNoneExist": f"identifier={ar.EXPORT_SYSTEM}|{key}"}
    assert comm["request"]["ifNoneExist"] == f"identifier={ar.EXPORT_SYSTEM}|{key}"
    assert binary["request"]["ifNoneExist"] == f"_tag={ar.EXPORT_SYSTEM}|{key}.1"

    d = doc["resource"]
    assert (d["status"], d["type"]["coding"][0]["system"], d["type"]["coding"][0]["code"]) == (
        "current", "http://loinc.org", "11506-3")
    subject = {"reference": f"Patient?identifier={INS_TEST_SYSTEM}|2480912345678",
               "display": "LEFÈVRE Hélène"}  # by INS, though the IPP came too
    assert d["subject"] == subject and comm["resource"]["subject"] == subject
    assert d["context"]["encounter"] == [{"reference": "Encounter/sejour-1"}]
    assert comm["resource"]["encounter"] == {"reference": "Encounter/sejour-1"}
    assert d["author"] == [{"identifier": {"system": RPPS_SYSTEM, "value": "10101010101"},
                            "display": "Dr Élise Martin"}]
    [content] = d["content"]
    assert content["attachment"]["contentType"] == "application/pdf"
    assert base64.b64decode(content["attachment"]["data"]).startswith(b"%PDF-1.4")

    b = binary["resource"]
    assert (b["contentType"], base64.b64decode(b["data"])) == (
        "application/pdf", b"%PDF-1.4 synthetic")
    assert b["securityContext"] == {"reference": doc["fullUrl"]}
    payload = comm["resource"]["payload"]
    assert payload[0]["contentString"].endswith("Échographie : FEVG 45 %, à revoir demain")
    assert {"reference": binary["fullUrl"], "display": "écho.pdf"} in [
        p.get("contentReference") for p in payload]
    assert comm["resource"]["sender"] == d["author"][0]


def test_the_export_identifier_is_stable_and_says_nothing():
    assert ar.export_identifier("r", ["a/1", "b/2"]) == ar.export_identifier("r", ["b/2", "a/1"])
    assert ar.export_identifier("r", ["a/1"]) != ar.export_identifier("r", ["a/1", "b/2"])
    assert ar.export_identifier("r", ["a/1"]) != ar.export_identifier("s", ["a/1"])
    one, again = ar.transaction(export(TEXT, SCAN)), ar.transaction(export(SCAN, TEXT))
    assert [e["request"] for e in one["entry"]] == [e["request"] for e in again["entry"]]
    assert [e["fullUrl"] for e in one["entry"]] == [e["fullUrl"] for e in again["entry"]]
    assert "room-1" not in str([e["request"] for e in one["entry"]])


def test_a_practitioner_found_in_the_record_is_referenced_and_no_rpps_leaves_a_display():
    found = ar.Author(display="Dr Élise Martin", rpps="1", practitioner="Practitioner/p9")
    bundle = ar.transaction(export(TEXT, author=found))
    assert resources(bundle)["DocumentReference"][0]["resource"]["author"] == [
        {"reference": "Practitioner/p9", "display": "Dr Élise Martin"}]
    bundle = ar.transaction(export(TEXT, author=ar.Author(display="u-123")))
    assert resources(bundle)["Communication"][0]["resource"]["sender"] == {"display": "u-123"}


def test_a_patient_without_identifier_or_an_empty_export_is_refused():
    nameless = PATIENT.model_copy(update={"identifiers": ()})
    with pytest.raises(FhirError, match="no identifier"):
        ar.transaction(export(TEXT).model_copy(update={"patient": nameless}))
    with pytest.raises(ValueError):
        export()


def test_an_answer_that_is_not_the_transaction_response_is_an_error():
    bundle = ar.transaction(export(TEXT))
    with pytest.raises(FhirError, match="transaction-response"):
        ar.receipt(bundle, {"resourceType": "Bundle", "type": "batch-response", "entry": []})
    answer = {"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": "201 Created", "location": "DocumentReference/d1/_history/1"}},
        {"response": {"status": "201 Created"}}]}
    with pytest.raises(FhirError, match="did not say where"):
        ar.receipt(bundle, answer)


# -- the PDF ---------------------------------------------------------------------------------
def _objects(document: bytes) -> dict[int, int]:
    """The xref table's object offsets, checked to point at their objects."""
    xref = int(re.search(rb"startxref\n(\d+)\n%%EOF\n$", document).group(1))
    table = document[xref:].split(b"trailer")[0].split(b"\n")[2:-1]
    offsets = {n: int(line[:10]) for n, line in enumerate(table) if line.endswith(b" n ")}
    for number, offset in offsets.items():
        assert document[offset:].startswith(b"%d 0 obj" % number), number
    return offsets


def test_the_transcript_pdf_is_well_formed_paginated_and_keeps_accents():
    lines = ar.transcript(export(TEXT, SCAN))
    assert lines[1] == "Patient : LEFÈVRE Hélène, né(e) le 12/09/1948"
    assert any("[document : écho.pdf, 18 octets] compte rendu" in line for line in lines)
    document = pdf.document(lines, "Mme Lefèvre")
    assert document.startswith(b"%PDF-1.4") and len(_objects(document)) == 6  # one page
    assert b"/Encoding /WinAnsiEncoding" in document
    assert "Échographie : FEVG 45 %, à revoir demain".encode("cp1252") in document
    assert b"(Nguyen Anais \\(soeur\\) \\\\ ?) '" in pdf.document(
        ["Nguyễn Anais (soeur) \\ \u4e2d"], "t")

    long = pdf.document([f"ligne {n} " + "é" * 150 for n in range(100)], "long")
    pages = int(re.search(rb"/Count (\d+)", long).group(1))
    assert pages == -(-200 // pdf.LINES_PER_PAGE)  # each line wraps into two
    assert len(_objects(long)) == 3 + 2 * pages + 1


# -- end to end: engines, relay, FHIR server -------------------------------------------------
async def _physician(relay: RelayProcess, tmp_path: Path, name: str, rpps: str) -> Watched:
    user = relay.add_user(name, "physician", "--rpps", rpps)
    engine = await Engine.enroll(tmp_path / name, relay.url, relay.invite(user), MemoryCustody())
    await engine.start()
    return Watched(engine)


def _count(base: str, kind: str, **params: str) -> int:
    r = httpx.get(f"{base}/{kind}", params={**params, "_summary": "count"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["total"]


@pytest.mark.asyncio
async def test_archiving_a_patient_room_to_the_record_once(relay, fhir_base, tmp_path):
    ins, rpps = "2" + unique_digits(12), unique_digits(11)
    who = patient(fhir_base, ins=ins)
    stay = encounter(fhir_base, who["id"], "in-progress", "2026-11-27T09:00:00+01:00")
    doctor = create(fhir_base, {"resourceType": "Practitioner", "identifier": [
        {"system": RPPS_SYSTEM, "value": rpps}], "name": [{"family": "Martin"}]})
    context = PATIENT.model_copy(update={
        "identifiers": (PatientIdentifier(system=INS_TEST_SYSTEM, value=ins),),
        "encounter": f"Encounter/{stay['id']}"})
    alice = await _physician(relay, tmp_path, "Élise Martin", rpps)
    bob = await _physician(relay, tmp_path, "Bob Durand", unique_digits(11))
    config = FhirConfig(base_url=fhir_base)
    try:
        await alice.engine.directory("Martin")  # the cache now knows alice's RPPS
        room = await alice.engine.create_room(RoomKind.PATIENT, "Mme Lefèvre", [
            bob.engine.user_id], patient=context)
        await bob.next(RoomChanged)
        text = await alice.engine.send_text(room, "Échographie : FEVG 45 %")
        scan = tmp_path / "echo.pdf"
        scan.write_bytes(b"%PDF-1.4\n% synthetic echo report\n%%EOF\n")
        document = await bob.engine.send_file(room, scan, caption="compte rendu")
        await until(lambda: document in {m.ref for m in alice.engine.messages(room)})

        before = {m.ref for m in alice.engine.messages(room)}
        first = await alice.engine.archive_to_record(room, [text, document], config)
        again = await alice.engine.archive_to_record(room, [document, text], config)
        assert first.created and not again.created
        assert (again.document_reference, again.communication, again.binaries) == (
            first.document_reference, first.communication, first.binaries)
        assert _count(fhir_base, "DocumentReference",
                      identifier=f"{ar.EXPORT_SYSTEM}|{first.identifier}") == 1
        assert _count(fhir_base, "Communication",
                      identifier=f"{ar.EXPORT_SYSTEM}|{first.identifier}") == 1
        assert _count(fhir_base, "Binary", _tag=f"{ar.EXPORT_SYSTEM}|{first.identifier}.1") == 1

        stored = httpx.get(f"{fhir_base}/{first.document_reference}", timeout=30).json()
        assert stored["subject"]["reference"] == f"Patient/{who['id']}"
        assert stored["context"]["encounter"][0]["reference"] == f"Encounter/{stay['id']}"
        assert stored["author"][0]["reference"] == f"Practitioner/{doctor['id']}"
        [binary] = first.binaries
        data = httpx.get(f"{fhir_base}/{binary}", timeout=30,
                         headers={"Accept": "application/fhir+json"}).json()
        assert base64.b64decode(data["data"]) == scan.read_bytes()
        comm = httpx.get(f"{fhir_base}/{first.communication}", timeout=30).json()
        assert {"reference": binary, "display": "echo.pdf"} in [
            p.get("contentReference") for p in comm["payload"]]

        notes = [m for m in alice.engine.messages(room) if m.ref not in before]
        assert [m.kind for m in notes] == [MessageKind.SYSTEM] * 2
        seen = await bob.next(MessageReceived)
        while seen.message.kind is not MessageKind.SYSTEM:
            seen = await bob.next(MessageReceived)
        assert seen.message.sender_user == alice.engine.user_id
        assert seen.message.body == (
            f"archived 2 message(s), 1 document(s) to the patient's record: "
            f"{first.document_reference}, {first.communication}")
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


@pytest.mark.asyncio
async def test_a_refused_or_impossible_archive_changes_nothing(relay, fhir_base, tmp_path):
    alice = await _physician(relay, tmp_path, "Élise Martin", unique_digits(11))
    config = FhirConfig(base_url=fhir_base)
    unknown = PATIENT.model_copy(update={"identifiers": (
        PatientIdentifier(system=INS_TEST_SYSTEM, value="2" + unique_digits(12)),)})
    try:
        team = await alice.engine.create_room(RoomKind.GROUP, "Garde", [])
        said = await alice.engine.send_text(team, "rien")
        with pytest.raises(EngineError, match="linked to a patient"):
            await alice.engine.archive_to_record(team, [said], config)

        room = await alice.engine.create_room(RoomKind.PATIENT, "Inconnu", [], patient=unknown)
        said = await alice.engine.send_text(room, "Bilan d'entrée")
        with pytest.raises(EngineError, match="to archive"):
            await alice.engine.archive_to_record(room, [said, team_ref(alice, team)], config)
        with pytest.raises(FhirError, match=r"HTTP 4\d\d.*Patient\?identifier"):
            await alice.engine.archive_to_record(room, [said], config)  # no such patient
        assert [m.ref for m in alice.engine.messages(room)] == [said]  # no archive note
        assert _stored(fhir_base, room, said) == 0

        number = "2" + unique_digits(12)
        patient(fhir_base, ins=number)  # in the record: only the room's rules stop the archive
        known = PATIENT.model_copy(update={"identifiers": (
            PatientIdentifier(system=INS_TEST_SYSTEM, value=number),), "encounter": None})
        closed = await alice.engine.create_room(RoomKind.PATIENT, "Sortie", [], patient=known)
        said = await alice.engine.send_text(closed, "Sortie prévue demain")
        await alice.engine.update_room(closed, archived=True)
        with pytest.raises(EngineError, match="read-only"):  # before the record is written
            await alice.engine.archive_to_record(closed, [said], config)
        assert _stored(fhir_base, closed, said) == 0
    finally:
        await alice.engine.stop()


def _stored(base: str, room: str, said: MessageRef) -> int:
    """DocumentReferences the record holds for an archive of this one message."""
    key = ar.export_identifier(room, [f"{said.sender_device}/{said.client_id}"])
    return _count(base, "DocumentReference", identifier=f"{ar.EXPORT_SYSTEM}|{key}")


def team_ref(watched: Watched, room: str):  # type: ignore[no-untyped-def]
    """A message of another room, which an archive of this one must refuse."""
    return watched.engine.messages(room)[-1].ref
