"""Room details: who is in the room and with which role, its retention, its documents, and
the way out. Managing members is offered to owners and moderators only, as the room's rules
(app/client/roles.py) allow it to them only; every member's device checks them again."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass

from app.client.engine import Engine, EngineError
from app.client.events import Event
from app.client.relay_api import RelayError, RelayUnavailable
from app.client.roles import MANAGERS, role_of
from app.ui.viewmodels.observable import Observable
from app.ui.viewmodels.people import People
from storage.members import RoomRole
from storage.messages import MessageKind, MessageRef
from storage.rooms import RoomKind

_SCAN_PAGE = 500  # messages read at a time when listing the room's documents


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
    """The room's ``members``, ``retention_days``, ``documents``; ``can_manage`` says whether
    this user may add, remove and change roles. ``left`` once the user has left."""

    def __init__(self, engine: Engine, people: People, room_id: str) -> None:
        super().__init__()
        self._engine, self._people, self.room_id = engine, people, room_id
        self.name = ""
        self.kind = RoomKind.GROUP
        self.members: list[MemberRow] = []
        self.documents: list[DocumentRow] = []
        self.retention_days: int | None = None
        self.archived = False
        self.can_manage = False
        self.left = False
        self.busy = False
        self.error_key: str | None = None
        self.error_detail = ""
        self._unsubscribe = engine.subscribe(self._on_event)
        self.refresh()

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
        self.can_manage = role_of(state, me) in MANAGERS
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
        """The room's document messages, newest first (read back a page at a time)."""
        rows: list[DocumentRow] = []
        page = self._engine.messages(self.room_id, _SCAN_PAGE)
        while page:
            for message in reversed(page):
                if message.kind is MessageKind.DOCUMENT and message.recalled_at is None:
                    sender = self._people.get(message.sender_user).name
                    time = message.server_ts or message.local_ts
                    rows += [DocumentRow(message.ref, a.file_name, sender, time)
                             for a in message.attachments]
            if len(page) < _SCAN_PAGE:
                break
            page = self._engine.messages(self.room_id, _SCAN_PAGE, before=page[0].ref)
        return rows

    async def _act(self, work: Awaitable[None]) -> bool:
        """Run one engine change; a refusal sets ``error_key`` and changes nothing."""
        self.busy, self.error_key = True, None
        self._changed()
        try:
            await work
        except (EngineError, RelayError, RelayUnavailable) as e:
            self.busy, self.error_key, self.error_detail = False, "details.error", str(e)
            self._changed()
            return False
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

    async def leave(self) -> bool:
        if await self._act(self._engine.leave(self.room_id)):
            self.left = True
            self._changed()
            return True
        return False

    def close(self) -> None:
        self._unsubscribe()
