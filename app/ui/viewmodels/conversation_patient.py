"""The patient banner of a patient room: who the room is about, read from the room's
PatientContext (never from its name, which a member may change)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from record.config import INS_SYSTEM, INS_TEST_SYSTEM
from storage.rooms import PatientContext

_INS_SYSTEMS = (INS_SYSTEM, INS_TEST_SYSTEM)


@dataclass(frozen=True, slots=True)
class PatientBanner:
    name: str  # FAMILY Given, as wards write it
    birth_date: date | None
    identifier: str  # the INS when there is one, else the first identifier
    identifier_is_ins: bool
    test_identity: bool  # an INS under the test OID: synthetic, never a real person
    ward: str | None
    bed: str | None


def patient_banner(patient: PatientContext | None) -> PatientBanner | None:
    if patient is None:
        return None
    ins = [i for i in patient.identifiers if i.system in _INS_SYSTEMS]
    chosen = ins[0] if ins else (patient.identifiers[0] if patient.identifiers else None)
    return PatientBanner(
        name=" ".join([patient.family_name.upper(), *patient.given_names]),
        birth_date=patient.birth_date,
        identifier=chosen.value if chosen is not None else "",
        identifier_is_ins=bool(ins),
        test_identity=chosen is not None and chosen.system == INS_TEST_SYSTEM,
        ward=patient.ward,
        bed=patient.bed,
    )
