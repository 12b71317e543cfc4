"""Finding patients and their current stay on a real FHIR R4 server (see tests/fhir_support)."""

from __future__ import annotations

from datetime import date

import httpx
import pytest

from record import FhirClient, FhirConfig, FhirError
from record import patients as pt
from record.config import INS_SYSTEM, INS_TEST_SYSTEM
from tests.fhir_support import IPP_SYSTEM, create, encounter, location, patient, unique_digits

pytestmark = pytest.mark.asyncio


def client(base: str, **settings: object) -> FhirClient:
    return FhirClient(FhirConfig(base_url=base, ipp_system=IPP_SYSTEM, **settings))


def ins() -> str:
    return "2" + unique_digits(12)


async def test_finds_a_test_identity_by_ins_and_reads_the_banner_fields(fhir_base):
    number, ipp = ins(), unique_digits(8)
    stored = patient(fhir_base, ins=number, ipp=ipp)
    patient(fhir_base, ins=ins())  # someone else
    async with client(fhir_base) as fhir:
        found = await pt.by_ins(fhir, f" {number} ")
    assert found == [pt.PatientSummary(
        id=stored["id"], ins=number, ins_system=INS_TEST_SYSTEM, ipp=ipp, family="Lefèvre",
        given=["Hélène"], birth_date="1948-09-12", gender="female")]


async def test_finds_a_national_ins_too(fhir_base):
    number = ins()
    stored = create(fhir_base, {"resourceType": "Patient", "birthDate": "1951",
                                "identifier": [{"system": INS_SYSTEM, "value": number}],
                                "name": [{"family": "Nguyễn", "given": ["Anaïs", "Zoé"]}]})
    async with client(fhir_base) as fhir:
        [found] = await pt.by_ins(fhir, number)
    assert (found.id, found.ins_system, found.ins) == (stored["id"], INS_SYSTEM, number)
    assert (found.given, found.birth_date, found.ipp) == (["Anaïs", "Zoé"], "1951", None)


async def test_finds_by_ipp_in_the_configured_system_only(fhir_base):
    ipp = unique_digits(8)
    stored = patient(fhir_base, ipp=ipp, family="Gauthier")
    create(fhir_base, {"resourceType": "Patient",  # same number, another hospital's system
                       "identifier": [{"system": "urn:oid:1.2.3.4.999", "value": ipp}]})
    async with client(fhir_base) as fhir:
        assert [p.id for p in await pt.by_ipp(fhir, ipp)] == [stored["id"]]
    async with FhirClient(FhirConfig(base_url=fhir_base)) as fhir:
        with pytest.raises(FhirError, match="no IPP identifier system"):
            await pt.by_ipp(fhir, ipp)


async def test_finds_by_family_name_and_birth_date(fhir_base):
    family = "Bérénice-" + unique_digits(6)
    twin = patient(fhir_base, family=family, birth_date="1990-02-03", given="Maëlle")
    patient(fhir_base, family=family, birth_date="1990-02-04")  # another birth date
    async with client(fhir_base) as fhir:
        found = await pt.by_name(fhir, family, date(1990, 2, 3))
    assert [(p.id, p.given, p.birth_date) for p in found] == [
        (twin["id"], ["Maëlle"], "1990-02-03")]


async def test_empty_search_terms_are_refused_before_asking(fhir_base):
    async with client(fhir_base) as fhir:
        for search in (pt.by_ins(fhir, " "), pt.by_ipp(fhir, ""),
                       pt.by_name(fhir, " ", date(2000, 1, 1))):
            with pytest.raises(FhirError, match="is required"):
                await search


async def test_the_current_stay_is_the_latest_ongoing_encounter_with_ward_and_bed(fhir_base):
    who = patient(fhir_base, ins=ins())
    ward = location(fhir_base, "Cardiologie — Unité Soins Intensifs", "wa")
    room = location(fhir_base, "Chambre 12", "ro", part_of=ward["id"])
    bed = location(fhir_base, "Lit 12-B", "bd", part_of=room["id"])
    old_ward = location(fhir_base, "Urgences", "wa")
    encounter(fhir_base, who["id"], "finished", "2026-11-27T08:00:00+01:00", [old_ward["id"]])
    encounter(fhir_base, who["id"], "arrived", "2026-11-20T10:00:00+01:00", [old_ward["id"]])
    current = encounter(fhir_base, who["id"], "in-progress", "2026-11-25T16:30:00+01:00",
                        [bed["id"]])  # only the bed: the ward is found up its partOf chain
    async with client(fhir_base) as fhir:
        stay = await pt.current_stay(fhir, who["id"])
    assert stay == pt.Stay(encounter=f"Encounter/{current['id']}", status="in-progress",
                           start="2026-11-25T16:30:00+01:00",
                           ward="Cardiologie — Unité Soins Intensifs", bed="Lit 12-B")


async def test_a_stay_without_locations_and_a_patient_without_a_stay(fhir_base):
    who, idle = patient(fhir_base, ins=ins()), patient(fhir_base, ins=ins())
    current = encounter(fhir_base, who["id"], "arrived", "2026-11-28")
    encounter(fhir_base, idle["id"], "finished", "2026-01-02")
    async with client(fhir_base) as fhir:
        assert await pt.current_stay(fhir, who["id"]) == pt.Stay(
            encounter=f"Encounter/{current['id']}", status="arrived", start="2026-11-28")
        assert await pt.current_stay(fhir, idle["id"]) is None


async def test_results_span_pages(fhir_base):
    family = "Dupré-" + unique_digits(6)
    made = {patient(fhir_base, family=family, birth_date="1975-05-05")["id"] for _ in range(5)}
    async with client(fhir_base, page_size=2) as fhir:
        # the premise: with _count=2 the server really pages
        first = httpx.get(f"{fhir_base}/Patient", params={"family": family, "_count": "2"},
                          timeout=30)
        assert any(link["relation"] == "next" for link in first.json()["link"])
        found = await pt.by_name(fhir, family, date(1975, 5, 5))
    assert sorted(p.id for p in found) == sorted(made)
