"""From the hospital record to a patient room's context: the one way the CLI (and, later, the
UI) turns a patient found in the record, and their current stay, into the ``PatientContext``
that the room's encrypted state carries.
"""

from __future__ import annotations

from datetime import date

from fhir.resources.R4B.patient import Patient
from pydantic import BaseModel, ConfigDict

from record import patients
from record.client import FhirClient
from record.errors import FhirError
from record.patients import PatientSummary, Stay
from storage.rooms import PatientContext, PatientIdentifier


class PatientQuery(BaseModel):
    """How the user names the patient: the record's id, an INS, an IPP, or name and birth."""

    model_config = ConfigDict(frozen=True)

    patient_id: str | None = None  # "Patient/123" or "123"
    ins: str | None = None
    ipp: str | None = None
    family: str | None = None
    birth_date: date | None = None

    def describe(self) -> str:
        """The kind of search, never its values: they identify a patient."""
        return ("the record's id" if self.patient_id else "INS" if self.ins
                else "IPP" if self.ipp else "name and birth date")


def context(summary: PatientSummary, stay: Stay | None, ipp_system: str | None) \
        -> PatientContext:
    """The room's patient context: identifiers (INS first), name, birth date and the stay.

    A partial birth date ("1948") cannot be a date and is left out rather than invented.
    """
    idents = []
    if summary.ins and summary.ins_system:
        idents.append(PatientIdentifier(system=summary.ins_system, value=summary.ins))
    if summary.ipp and ipp_system:
        idents.append(PatientIdentifier(system=ipp_system, value=summary.ipp))
    if not idents:
        raise FhirError(f"Patient/{summary.id} has neither INS nor IPP: a room must not be "
                        "linked to a patient it cannot name again")
    if not summary.family:
        raise FhirError(f"Patient/{summary.id} has no family name to show on the banner")
    return PatientContext(
        identifiers=tuple(idents), family_name=summary.family, given_names=tuple(summary.given),
        birth_date=_full_date(summary.birth_date),
        encounter=stay.encounter if stay else None,
        ward=stay.ward if stay else None, bed=stay.bed if stay else None)


def _full_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value and len(value) == 10 else None
    except ValueError:
        return None


async def search(fhir: FhirClient, query: PatientQuery) -> list[PatientSummary]:
    """The candidates the query matches in the record."""
    if query.patient_id:
        found = await fhir.read(Patient, query.patient_id.removeprefix("Patient/"))
        return [patients.summary(found, fhir.config.ipp_system)]
    if query.ins:
        return await patients.by_ins(fhir, query.ins)
    if query.ipp:
        return await patients.by_ipp(fhir, query.ipp)
    if query.family and query.birth_date:
        return await patients.by_name(fhir, query.family, query.birth_date)
    raise FhirError("name the patient by record id, INS, IPP, or family name and birth date")


async def patient_context(fhir: FhirClient, query: PatientQuery) -> PatientContext:
    """The context of the one patient the query names, with their current stay; an error if
    the query names none or several (the user must then narrow it)."""
    found = await search(fhir, query)
    if len(found) != 1:
        raise FhirError(f"{'no' if not found else len(found)} patients in the record match "
                        f"this {query.describe()}: name exactly one")
    stay = await patients.current_stay(fhir, found[0].id)
    return context(found[0], stay, fhir.config.ipp_system)
