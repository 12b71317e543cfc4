"""New conversation: find colleagues in the directory, pick them, and open the room.

One person picked makes a direct room (the existing one when there is already one with that
person); several make a group; a service, patient or project room takes a name, and a patient
room its patient's name and identifiers (typed for now; the FHIR search comes later).
"""

from __future__ import annotations

from datetime import date

from pydantic import ValidationError

from app.client.engine import Engine, EngineError
from app.client.fhir.config import INS_SYSTEM
from app.client.relay_api import RelayError, RelayUnavailable
from app.ui.i18n import CATALOGUES
from app.ui.viewmodels.observable import Observable
from app.ui.viewmodels.people import People, Person
from storage.directory import DirectoryEntry
from storage.rooms import PatientContext, PatientIdentifier, RoomKind
from storage.text import fold

IPP_SYSTEM = "urn:liaison:ipp"  # the hospital's own patient number, until its OID is configured


class NewRoom(Observable):
    """``results`` of the last search, the ``picked`` colleagues, the room's ``kind`` and
    fields; ``error_key`` (a catalogue key) when the last action failed, nothing typed lost."""

    def __init__(self, engine: Engine, people: People) -> None:
        super().__init__()
        self._engine, self._people = engine, people
        self.query = ""
        self.results: list[Person] = []
        self.picked: dict[str, Person] = {}
        self.kind = RoomKind.DIRECT
        self.name = ""
        self.patient_family_name = ""
        self.patient_given_names = ""
        self.patient_birth_date = ""  # ISO 8601, as the date field gives it
        self.patient_ins = ""
        self.patient_ipp = ""
        self.error_key: str | None = None
        self.error_detail = ""
        self.busy = False

    def _fail(self, key: str, detail: str = "") -> None:
        self.error_key, self.error_detail, self.busy = key, detail, False
        self._changed()

    async def search(self, query: str) -> None:
        """Colleagues with words of their name (the relay's directory, or its cache when
        offline), service, specialty or profession starting with the query's words, ignoring
        case and accents."""
        self.query = query
        words = fold(query)
        if not words:
            self.results = []
            self._changed()
            return
        try:
            by_name = [_person(e) for e in await self._engine.directory(query)]
        except RelayError as e:
            return self._fail("newroom.error.directory", str(e))
        if query != self.query:  # a later keystroke's search supersedes this one
            return
        by_role = [p for p in self._people.everyone() if _matches(p, words)]
        found = {p.user_id: p for p in by_name + by_role}
        found.pop(self._engine.user_id, None)
        self.results = sorted(found.values(), key=lambda p: p.name.casefold())
        self.error_key = None
        self._changed()

    def clear(self) -> None:
        """Forget the search and the picks (the colleagues were added)."""
        self.query, self.results, self.picked = "", [], {}
        self._changed()

    def choose_kind(self, kind: RoomKind) -> None:
        self.kind = kind
        if kind is RoomKind.DIRECT and len(self.picked) > 1:
            self.picked = dict(list(self.picked.items())[-1:])
        self._changed()

    def toggle(self, entry: Person) -> None:
        """Pick or unpick a colleague; a direct room has exactly one, so picking replaces."""
        if entry.user_id in self.picked:
            del self.picked[entry.user_id]
        elif self.kind is RoomKind.DIRECT:
            self.picked = {entry.user_id: entry}
        else:
            self.picked[entry.user_id] = entry
        self._changed()

    def _patient(self) -> PatientContext:
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

    def _existing_direct(self, user_id: str) -> str | None:
        mine = {self._engine.user_id, user_id}
        for room in self._engine.rooms():
            if room.kind is RoomKind.DIRECT and {
                m.user_id for m in self._engine.members(room.id)} == mine:
                return room.id
        return None

    async def create(self) -> str | None:
        """The room's id once created (or found, for a direct room); None with ``error_key``."""
        members = list(self.picked)
        patient: PatientContext | None = None
        if self.kind is RoomKind.DIRECT:
            if len(members) != 1:
                return self._fail("newroom.error.pick_one")
            existing = self._existing_direct(members[0])
            if existing is not None:
                return existing
            name = self.picked[members[0]].name
        elif self.kind is RoomKind.GROUP:
            if not members:
                return self._fail("newroom.error.pick_some")
            name = self.name.strip() or ", ".join(p.name for p in self.picked.values())
        else:
            name = self.name.strip()
            if not name:
                return self._fail("newroom.error.name")
        if self.kind is RoomKind.PATIENT:
            if not self.patient_family_name.strip() or not (
                    self.patient_ins.strip() or self.patient_ipp.strip()):
                return self._fail("newroom.error.patient")
            try:
                patient = self._patient()
            except (ValueError, ValidationError) as e:
                return self._fail("newroom.error.patient_invalid", str(e))
        self.busy, self.error_key = True, None
        self._changed()
        try:
            room_id = await self._engine.create_room(self.kind, name, members, patient=patient)
        except (EngineError, RelayError, RelayUnavailable) as e:
            return self._fail("newroom.error.create", str(e))
        self.busy = False
        self._changed()
        return room_id


def _person(entry: DirectoryEntry) -> Person:
    return Person(entry.user_id, entry.display_name, entry.profession, entry.services,
                  entry.specialty)


def _matches(person: Person, words: list[str]) -> bool:
    """Every query word starts a word of the person's services or specialty, or names their
    profession in either language ("infirmiere" and "nurse" both find a nurse)."""
    place = fold(" ".join((*person.services, person.specialty or "")))
    profession = [w for c in CATALOGUES.values()
                  for w in fold(c[f"profession.{person.profession}"])]
    return all(any(p.startswith(w) for p in place)
               or any(p.startswith(w) or w.startswith(p) for p in profession if len(p) > 3)
               for w in words)
