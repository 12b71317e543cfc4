"""Room details: who is in the room and with which role, its retention, its patient, its
documents, and the way out. Managing members and changing the patient are offered to owners
and moderators only, as the room's rules (app/client/roles.py) allow both to them only; every
member's device checks them again."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

from app.client.engine import Engine, EngineError
from app.client.events import Event
from app.client.relay_api import RelayError, RelayUnavailable
from app.client.roles import manages, role_of
from app.ui.viewmodels.conversation_patient import PatientBanner, patient_banner
from app.ui.viewmodels.observable import Observable
from app.ui.viewmodels.patient_picker import Candidate, PatientError, PatientPicker
from app.ui.viewmodels.people import People
from storage.members import RoomRole
from storage.messages import MessageRef
from storage.rooms import RoomKind

DOCUMENTS_SHOWN = 500  # the newest; older ones stay reachable in the conversation


@dataclass(frozen=True, slots=True)
class MemberRow:
    user_id: str
    name: str
    profession: str
    role: RoomRole
    me: bool


@dataclass(frozen=True, slots=True)
class DocumentRow:
    ref: MessageRef
    file_name: str
    sender_name: str
    time: float


class RoomDetails(Observable):
    """The room's ``members``, ``retention_days``, ``patient`` (a patient room's banner),
    ``documents``; ``can_manage`` says whether this user may add, remove and change roles,
    ``can_change_patient`` whether they may link a patient room to another patient (named
    with ``picker``) or unlink it. ``left`` once the user has left."""

    def __init__(self, engine: Engine, people: People, room_id: str,
                 environ: Mapping[str, str] = os.environ) -> None:
        super().__init__()
        self._engine, self._people, self.room_id = engine, people, room_id
        self.name = ""
        self.kind = RoomKind.GROUP
        self.members: list[MemberRow] = []
        self.documents: list[DocumentRow] = []
        self.retention_days: int | None = None
        self.patient: PatientBanner | None = None
        self.archived = False
        self.can_manage = False
        self.left = False
        self.busy = False
        self.error_key: str | None = None
        self.error_detail = ""
        self.picker = PatientPicker(environ)
        self._unsubscribe = engine.subscribe(self._on_event)
        self.refresh()
        if self.can_change_patient and self.picker.config_error is not None:
            error = self.picker.config_error  # shown; the typed form stays usable
            self._fail(error.key, error.detail)

    @property
    def can_change_patient(self) -> bool:
        return self.can_manage and self.kind is RoomKind.PATIENT

    def _on_event(self, _event: Event) -> None:
        if not self.left:
            self.refresh()

    def refresh(self) -> None:
        """Read the room's agreed state, members and documents again."""
        try:
            state = self._engine.room_state(self.room_id)
        except EngineError:  # the room is gone: left here or on another device
            self.left = True
            self._changed()
            return
        me = self._engine.user_id
        self.name, self.kind = state.name, state.kind
        self.retention_days, self.archived = state.retention_days, state.archived
        self.patient = patient_banner(state.patient)
        self.can_manage = manages(state, me)
        self.members = sorted(
            (self._member(m.user_id, role_of(state, m.user_id), me)
             for m in self._engine.members(self.room_id)),
            key=lambda row: (list(RoomRole).index(row.role), row.name.casefold()),
        )
        self.documents = self._documents()
        self._changed()

    def _member(self, user_id: str, role: RoomRole, me: str) -> MemberRow:
        person = self._people.get(user_id)
        return MemberRow(user_id, person.name, person.profession, role, user_id == me)

    def _documents(self) -> list[DocumentRow]:
        """The room's documents, newest first."""
        return [DocumentRow(message.ref, a.file_name,
                            self._people.get(message.sender_user).name,
                            message.server_ts or message.local_ts)
                for message in self._engine.documents(self.room_id, DOCUMENTS_SHOWN)
                for a in message.attachments]

    def _fail(self, key: str, detail: str = "") -> bool:
        self.busy, self.error_key, self.error_detail = False, key, detail
        self._changed()
        return False

    async def _act(self, work: Awaitable[None]) -> bool:
        """Run one change; a refusal or failure sets ``error_key`` and changes nothing."""
        self.busy, self.error_key = True, None
        self._changed()
        try:
            await work
        except PatientError as e:
            return self._fail(e.key, e.detail)
        except (EngineError, RelayError, RelayUnavailable) as e:
            return self._fail("details.error", str(e))
        self.busy = False
        self.refresh()
        return True

    async def add(self, user_ids: list[str]) -> bool:
        return await self._act(self._engine.invite(self.room_id, user_ids))

    async def remove(self, user_id: str) -> bool:
        return await self._act(self._engine.remove(self.room_id, user_id))

    async def set_role(self, user_id: str, role: RoomRole) -> bool:
        return await self._act(self._engine.set_role(self.room_id, user_id, role))

    async def set_retention(self, days: int | None) -> bool:
        return await self._act(self._engine.update_room(self.room_id, retention_days=days))

    async def search_patient(self) -> bool:
        """The record's patients matching what was typed (``picker.candidates``)."""
        return await self._act(self.picker.search())

    def choose_patient(self, candidate: Candidate) -> None:
        self.picker.choose(candidate)
        self._changed()

    async def change_patient(self) -> bool:
        """Link the room to the patient chosen in the record or typed: a room-state commit
        after which every member's banner shows them."""
        try:
            patient = self.picker.context()
        except PatientError as e:
            return self._fail(e.key, e.detail)
        return await self._act(self._engine.update_room(self.room_id, patient=patient))

    async def unlink_patient(self) -> bool:
        """The room stays a patient room, about no one until linked again."""
        return await self._act(self._engine.update_room(self.room_id, patient=None))

    async def leave(self) -> bool:
        if await self._act(self._engine.leave(self.room_id)):
            self.left = True
            self._changed()
            return True
        return False

    def close(self) -> None:
        self._unsubscribe()
