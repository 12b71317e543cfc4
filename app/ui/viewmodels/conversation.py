"""One conversation: the timeline as bubbles with day separators, paged back on demand,
and the composer.

Only the last page is read when a room opens, so a room with ten thousand messages opens as
fast as one with ten; scrolling to the top asks for the page before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from app.client.engine import Engine, EngineError
from app.client.events import Event, MessageReceived, ReceiptReceived, RoomChanged
from app.ui.viewmodels.observable import Observable
from app.ui.viewmodels.people import People
from storage.messages import Message, MessageRef, Priority
from storage.status import MessageStatus

PAGE = 50


@dataclass(frozen=True, slots=True)
class Bubble:
    ref: MessageRef
    sender_name: str
    profession: str
    mine: bool
    body: str | None  # None once recalled
    time: float
    status: MessageStatus
    urgent: bool
    can_acknowledge: bool  # an urgent message from someone else, not acknowledged yet
    edited: bool
    recalled: bool


@dataclass(frozen=True, slots=True)
class DaySeparator:
    day: date


class Conversation(Observable):
    """The room's ``timeline``, ``draft`` and ``urgent`` toggle, and ``error_key`` when an
    action failed (its text keeps what the user typed)."""

    def __init__(self, engine: Engine, people: People, room_id: str) -> None:
        super().__init__()
        self._engine, self._people, self.room_id = engine, people, room_id
        self.draft = ""
        self.urgent = False
        self.error: str | None = None  # the engine's reason, shown as is
        self._messages: list[Message] = []
        self.has_older = False
        self._unsubscribe = engine.subscribe(self._on_event)
        self._load(PAGE)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, MessageReceived | ReceiptReceived | RoomChanged) and (
            event.room.id == self.room_id
        ):
            self._load(max(PAGE, len(self._messages)))

    def _load(self, count: int) -> None:
        """Read the last ``count`` messages (one more, to learn whether older ones exist)."""
        messages = self._engine.messages(self.room_id, limit=count + 1)
        self.has_older = len(messages) > count
        self._messages = messages[-count:] if self.has_older else messages
        self._changed()

    def load_older(self) -> int:
        """Add the page before the oldest message shown; how many messages it added."""
        if not self.has_older or not self._messages:
            return 0
        older = self._engine.messages(self.room_id, PAGE + 1, before=self._messages[0].ref)
        self.has_older = len(older) > PAGE
        older = older[-PAGE:]
        self._messages = older + self._messages
        self._changed()
        return len(older)

    @property
    def room_name(self) -> str:
        room = next((r for r in self._engine.rooms() if r.id == self.room_id), None)
        return room.name if room is not None else ""

    @property
    def timeline(self) -> list[Bubble | DaySeparator]:
        items: list[Bubble | DaySeparator] = []
        day: date | None = None
        for message in self._messages:
            bubble = self._bubble(message)
            bubble_day = datetime.fromtimestamp(bubble.time).date()
            if bubble_day != day:
                items.append(DaySeparator(bubble_day))
                day = bubble_day
            items.append(bubble)
        return items

    def _bubble(self, message: Message) -> Bubble:
        sender = self._people.get(message.sender_user)
        mine = message.sender_user == self._engine.user_id
        urgent = message.priority is Priority.URGENT
        return Bubble(
            ref=message.ref,
            sender_name=sender.name,
            profession=sender.profession,
            mine=mine,
            body=message.body if message.recalled_at is None else None,
            time=message.server_ts if message.server_ts is not None else message.local_ts,
            status=message.status,
            urgent=urgent,
            can_acknowledge=urgent and not mine and message.status < MessageStatus.ACKNOWLEDGED,
            edited=message.edited_at is not None,
            recalled=message.recalled_at is not None,
        )

    # -- actions -----------------------------------------------------------------------------
    async def send(self) -> bool:
        """Send the draft; on failure the draft stays and ``error`` says why."""
        body = self.draft.strip()
        if not body:
            return False
        try:
            await self._engine.send_text(self.room_id, body, urgent=self.urgent)
        except EngineError as e:
            self.error = str(e)
            self._changed()
            return False
        self.draft, self.urgent, self.error = "", False, None
        self._load(max(PAGE, len(self._messages) + 1))
        return True

    async def acknowledge(self, ref: MessageRef) -> None:
        try:
            await self._engine.acknowledge(ref)
        except EngineError as e:
            self.error = str(e)
        self._load(max(PAGE, len(self._messages)))

    async def mark_read(self) -> None:
        """Tell the senders the room was read up to its newest message from someone else."""
        others = [m for m in self._messages if m.sender_user != self._engine.user_id]
        if others and others[-1].status < MessageStatus.READ:
            await self._engine.mark_read(self.room_id, others[-1].ref)
            self._load(max(PAGE, len(self._messages)))

    def close(self) -> None:
        self._unsubscribe()
