"""Finding a patient in the record and their current stay, as plain summaries.

The summaries (``PatientSummary``, ``Stay``) are what a patient room keeps in its encrypted
state; they carry only what the banner shows and what links back to the record.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime

from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.patient import Patient
from pydantic import BaseModel, ConfigDict

from record.client import FhirClient
from record.config import INS_SYSTEMS
from record.errors import FhirError
from record.wire import reference_id

CURRENT_STATUSES = ("in-progress", "arrived")
WARD, BED = "wa", "bd"  # location-physical-type codes
_PARENT_DEPTH = 4  # bed -> room -> ward -> wing: enough to find a ward above a bed


class PatientSummary(BaseModel):
    """Who the patient is, by the record's identifiers."""

    model_config = ConfigDict(frozen=True)

    id: str  # the server's logical id: a reference is "Patient/{id}"
    ins: str | None = None
    ins_system: str | None = None
    ipp: str | None = None
    family: str | None = None
    given: list[str] = []
    birth_date: str | None = None  # FHIR date: may be partial ("1948", "1948-09")
    gender: str | None = None


class Stay(BaseModel):
    """The current Encounter, with the ward and bed it takes place in, where known."""

    model_config = ConfigDict(frozen=True)

    encounter: str  # "Encounter/{id}"
    status: str
    start: str | None = None  # FHIR dateTime, as the record gives it
    ward: str | None = None
    bed: str | None = None


def summary(patient: Patient, ipp_system: str | None) -> PatientSummary:
    idents = patient.identifier or []
    ins = next((i for s in INS_SYSTEMS for i in idents if i.system == s and i.value), None)
    ipp = next((i.value for i in idents if ipp_system and i.system == ipp_system), None)
    names = patient.name or []
    name = next((n for n in names if n.use == "official"), names[0] if names else None)
    return PatientSummary(
        id=patient.id or "", ins=ins.value if ins else None, ins_system=ins.system if ins else None,
        ipp=ipp, family=name.family if name else None, given=list(name.given or []) if name else [],
        birth_date=_text(patient.birthDate), gender=patient.gender)


async def by_ins(fhir: FhirClient, ins: str) -> list[PatientSummary]:
    """Patients with this INS, in the national system or the test-identity one."""
    value = ins.strip()
    if not value:
        raise FhirError("an INS is required")
    return await _find(fhir, {"identifier": ",".join(f"{s}|{value}" for s in INS_SYSTEMS)})


async def by_ipp(fhir: FhirClient, ipp: str) -> list[PatientSummary]:
    """Patients with this local IPP, in the hospital's configured IPP system."""
    system = fhir.config.ipp_system
    if not system:
        raise FhirError("this hospital's configuration names no IPP identifier system")
    if not ipp.strip():
        raise FhirError("an IPP is required")
    return await _find(fhir, {"identifier": f"{system}|{ipp.strip()}"})


async def by_name(fhir: FhirClient, family: str, birth_date: date) -> list[PatientSummary]:
    """Patients with this family name (the server's string match) born on that day."""
    if not family.strip():
        raise FhirError("a family name is required")
    return await _find(fhir, {"family": family.strip(), "birthdate": birth_date.isoformat()})


async def _find(fhir: FhirClient, params: dict[str, str]) -> list[PatientSummary]:
    found = await fhir.search(Patient, params)
    return [summary(p, fhir.config.ipp_system) for p in found if p.id]


def current_encounter(encounters: Iterable[Encounter]) -> Encounter | None:
    """The ongoing encounter that started last (one without a start counts as oldest)."""
    ongoing = [e for e in encounters if e.status in CURRENT_STATUSES]
    return max(ongoing, key=_start_key, default=None)


def _start_key(encounter: Encounter) -> float:
    start = encounter.period.start if encounter.period else None
    return float("-inf") if start is None else _instant(start)


def _instant(value: datetime | date | str) -> float:
    """A FHIR dateTime as a timestamp: a bare date or a partial one ("2026-11") is its start,
    in UTC; a time without a zone is taken as local, as FHIR leaves it to the reader."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        year, _, month = value.partition("-")
        value = date(int(year), int(month or 1), 1)
    return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()


def _text(value: datetime | date | str | None) -> str | None:
    return value if value is None or isinstance(value, str) else value.isoformat()


def location_ids(encounter: Encounter) -> list[str]:
    """The encounter's present locations (not planned nor completed), as Location ids."""
    return [lid for entry in encounter.location or ()
            if entry.status not in ("planned", "completed")
            and (lid := reference_id(entry.location.reference, "Location"))]


def physical_type(location: Location) -> str | None:
    codes = [c.code for c in (location.physicalType.coding or [])] if location.physicalType \
        else []
    return next((c for c in codes if c in (WARD, BED)), None)


async def current_stay(fhir: FhirClient, patient_id: str) -> Stay | None:
    """The patient's current stay, its ward and bed read from its Locations; None if none."""
    encounter = current_encounter(await fhir.search(
        Encounter, {"subject": f"Patient/{patient_id}", "status": ",".join(CURRENT_STATUSES)}))
    if encounter is None:
        return None
    places: dict[str, str] = {}
    for lid in location_ids(encounter):
        location: Location | None = await fhir.read(Location, lid)
        for _ in range(_PARENT_DEPTH):  # a bed's ward is found up its partOf chain
            if location is None:
                break
            kind = physical_type(location)
            if kind is not None and location.name:
                places.setdefault(kind, location.name)
            parent = reference_id(location.partOf.reference if location.partOf else None,
                                  "Location")
            location = await fhir.read(Location, parent) if parent and WARD not in places \
                else None
    period = encounter.period
    return Stay(encounter=f"Encounter/{encounter.id}", status=encounter.status,
                start=_text(period.start) if period else None, ward=places.get(WARD),
                bed=places.get(BED))
