"""New conversation: find colleagues in the directory, pick them, and open the room.

One person picked makes a direct room (the existing one when there is already one with that
person); several make a group; a service, patient or project room takes a name, and a patient
room its patient (``picker``: found in the hospital's record or typed, see patient_picker).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from app.client.engine import Engine, EngineError
from app.client.relay_api import RelayError, RelayUnavailable
from app.ui.i18n import CATALOGUES
from app.ui.viewmodels.observable import Observable
from app.ui.viewmodels.patient_picker import Candidate, PatientError, PatientPicker
from app.ui.viewmodels.people import People, Person
from storage.directory import DirectoryEntry
from storage.rooms import PatientContext, RoomKind
from storage.text import fold


class NewRoom(Observable):
    """``results`` of the last search, the ``picked`` colleagues, the room's ``kind`` and
    fields, and a patient room's patient (``picker``); ``error_key`` (a catalogue key) when
    the last action failed, nothing typed lost."""

    def __init__(self, engine: Engine, people: People,
                 environ: Mapping[str, str] = os.environ) -> None:
        super().__init__()
        self._engine, self._people = engine, people
        self.query = ""
        self.results: list[Person] = []
        self.picked: dict[str, Person] = {}
        self.kind = RoomKind.DIRECT
        self.name = ""
        self.picker = PatientPicker(environ)
        self.error_key: str | None = None
        self.error_detail = ""
        self.busy = False
        if self.picker.config_error is not None:  # shown, and the typed form stays usable
            self._fail(self.picker.config_error.key, self.picker.config_error.detail)

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

    async def search_patient(self) -> None:
        """The record's patients matching what was typed (``picker.candidates``)."""
        self.busy, self.error_key = True, None
        self._changed()
        try:
            await self.picker.search()
        except PatientError as e:
            return self._fail(e.key, e.detail)
        self.busy = False
        self._changed()

    def choose_patient(self, candidate: Candidate) -> None:
        """The room's patient; their name names the room unless one was typed."""
        self.picker.choose(candidate)
        if not self.name.strip():
            who = candidate.patient
            self.name = " ".join([(who.family or "").upper(), *who.given]).strip()
        self._changed()

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
        if self.kind is RoomKind.PATIENT:
            try:
                patient = self.picker.context()
            except PatientError as e:
                return self._fail(e.key, e.detail)
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
