"""Naming a room's patient, wherever a room gets one: the new-conversation screen and a
patient room's details. The patient is found in the hospital's record (INS, IPP, or family
name and birth date) when the app has a FHIR configuration (``LIAISON_FHIR_*``), typed by hand
otherwise; either way the result is the one PatientContext the room's encrypted state carries.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from record import FhirConfig, FhirError
from record.config import INS_SYSTEM
from record.environment import config_from_environment
from storage.rooms import PatientContext, PatientIdentifier

if TYPE_CHECKING:
    from app.client.patient_rooms import PatientQuery
    from record.patients import PatientSummary, Stay

IPP_SYSTEM = "urn:liaison:ipp"  # the hospital's own patient number, until its OID is configured
MAX_CANDIDATES = 20  # each costs a stay lookup; more means the search must be narrowed


class PatientError(Exception):
    """Why no patient could be searched for or named: ``key`` is a catalogue key, ``detail``
    what failed, for the message; the screen shows it and keeps what was typed."""

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(key, detail)
        self.key, self.detail = key, detail


@dataclass(frozen=True)
class Candidate:
    """A patient the record search found, with their current stay (None when not admitted)."""

    patient: PatientSummary
    stay: Stay | None


class PatientPicker:
    """The record search's fields (``record_*``), the ``candidates`` it found and the
    ``chosen`` one when ``fhir`` is configured; the typed identity's fields (``patient_*``)
    otherwise. ``config_error`` says why a ``LIAISON_FHIR_*`` setting was refused (the typed
    form then stays usable)."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self.patient_family_name = ""
        self.patient_given_names = ""
        self.patient_birth_date = ""  # ISO 8601, as the date field gives it
        self.patient_ins = ""
        self.patient_ipp = ""
        self.record_ins = ""
        self.record_ipp = ""
        self.record_family = ""
        self.record_birth_date = ""  # ISO 8601
        self.candidates: list[Candidate] = []
        self.chosen: Candidate | None = None
        self.config_error: PatientError | None = None
        try:
            self.fhir: FhirConfig | None = config_from_environment(environ)
        except ValueError as e:
            self.fhir = None
            self.config_error = PatientError("newroom.error.record_config", str(e))

    def _record_query(self) -> PatientQuery:
        """INS first, then IPP, then family name and birth date: the first one typed."""
        from app.client.patient_rooms import PatientQuery  # see search

        birth = self.record_birth_date.strip()
        return PatientQuery(ins=self.record_ins.strip() or None,
                            ipp=self.record_ipp.strip() or None,
                            family=self.record_family.strip() or None,
                            birth_date=date.fromisoformat(birth) if birth else None)

    async def search(self) -> None:
        """The record's patients matching what was typed, each with their current stay, as
        ``candidates``; PatientError when the search is invalid, fails or finds nobody."""
        if self.fhir is None:
            return
        # Imported on the first record search: the FHIR models they load take half a second,
        # which the app's startup does not wait for.
        from app.client.patient_rooms import search as search_record
        from record.client import FhirClient
        from record.patients import current_stay

        try:
            query = self._record_query()
        except ValueError as e:
            raise PatientError("newroom.error.record_query", str(e)) from e
        self.candidates, self.chosen = [], None
        try:
            async with FhirClient(self.fhir) as fhir:
                found = await search_record(fhir, query)
                if len(found) > MAX_CANDIDATES:
                    raise PatientError("newroom.error.record_many", str(len(found)))
                self.candidates = [Candidate(p, await current_stay(fhir, p.id)) for p in found]
        except FhirError as e:
            raise PatientError("newroom.error.record", str(e)) from e
        if not self.candidates:
            raise PatientError("newroom.error.record_none")

    def choose(self, candidate: Candidate) -> None:
        self.chosen = candidate

    def context(self) -> PatientContext:
        """The patient chosen in the record, or typed; PatientError when there is none yet or
        what was typed cannot name a patient."""
        if self.fhir is not None:
            if self.chosen is None:
                raise PatientError("newroom.error.record_pick")
            from app.client.patient_rooms import context  # see search

            try:
                return context(self.chosen.patient, self.chosen.stay, self.fhir.ipp_system)
            except FhirError as e:
                raise PatientError("newroom.error.record", str(e)) from e
        if not self.patient_family_name.strip() or not (
                self.patient_ins.strip() or self.patient_ipp.strip()):
            raise PatientError("newroom.error.patient")
        try:
            return self._typed()
        except ValueError as e:  # a bad date, or what PatientContext refuses
            raise PatientError("newroom.error.patient_invalid", str(e)) from e

    def _typed(self) -> PatientContext:
        identifiers = [PatientIdentifier(system=system, value=value.strip())
                       for system, value in ((INS_SYSTEM, self.patient_ins),
                                             (IPP_SYSTEM, self.patient_ipp)) if value.strip()]
        birth = self.patient_birth_date.strip()
        return PatientContext(
            identifiers=tuple(identifiers),
            family_name=self.patient_family_name.strip().upper(),
            given_names=tuple(self.patient_given_names.split()),
            birth_date=date.fromisoformat(birth) if birth else None,
        )
