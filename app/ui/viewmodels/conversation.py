"""One conversation: the timeline as bubbles with day separators, paged back on demand,
the composer (text, urgent, reply, edit, documents) and the patient banner.

Only the last page is read when a room opens, so a room with ten thousand messages opens as
fast as one with ten; scrolling to the top asks for the page before.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from app.client.documents import DocumentError
from app.client.engine import Engine, EngineError
from app.client.events import (
    Event,
    MessageChanged,
    MessageReceived,
    MessageSent,
    ReceiptReceived,
    RoomChanged,
    TransferProgress,
)
from app.client.roles import manages
from app.ui.viewmodels.conversation_patient import PatientBanner, patient_banner
from app.ui.viewmodels.observable import Observable
from app.ui.viewmodels.people import People
from storage.messages import Message, MessageKind, MessageRef, Priority
from storage.rooms import Room
from storage.status import MessageStatus

PAGE = 50
QUOTE_CHARS = 80


@dataclass(frozen=True, slots=True)
class Quote:
    """The message a reply answers, as the reply shows it."""

    sender_name: str
    excerpt: str | None  # None: recalled, or not in this device's cache


@dataclass(frozen=True, slots=True)
class Document:
    name: str
    size: int  # the plaintext's, in bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class Transfer:
    """A document on its way: ``done`` of ``total`` bytes."""

    direction: str  # "upload" or "download"
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    @property
    def percent(self) -> int:
        return int(self.fraction * 100)


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
    can_change: bool  # one's own message, not recalled: it may be edited or recalled
    reply: Quote | None = None
    document: Document | None = None


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
        self.reply_to: MessageRef | None = None  # the message the draft answers
        self.editing: MessageRef | None = None  # the own message the draft replaces
        self.error: str | None = None  # the engine's reason, shown as is
        self.transfers: dict[MessageRef, Transfer] = {}  # documents on their way
        self.fetched: set[MessageRef] = set()  # documents in the cache, ready to save
        self.encrypting = 0  # documents being encrypted, before their upload reports progress
        self._messages: list[Message] = []
        self.has_older = False
        self._unsubscribe = engine.subscribe(self._on_event)
        self._unobserve_people = people.observe(self._changed)  # names synced after opening
        self._load(PAGE)

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, _ROOM_EVENTS) or event.room.id != self.room_id:
            return
        if isinstance(event, TransferProgress):
            transfer = Transfer(event.direction, event.done, event.total)
            before = self.transfers.get(event.message_ref)
            self.transfers[event.message_ref] = transfer
            if before is None or before.percent != transfer.percent:  # redraw 100 times at most
                self._changed()
        else:
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
    def patient(self) -> PatientBanner | None:
        """The banner of a patient room; None for other rooms."""
        room = next((r for r in self._engine.rooms() if r.id == self.room_id), None)
        return None if room is None else patient_banner(room.patient)

    @property
    def unreadable(self) -> bool:
        """This device fell out of step with the room: what arrives, it cannot read."""
        return self._engine.unreadable(self.room_id)

    @property
    def replacement(self) -> Room | None:
        """The new room an owner or moderator opened again for this unreadable one."""
        return self._engine.replacement(self.room_id)  # only while this device cannot read

    @property
    def can_reopen(self) -> bool:
        """Unreadable here, and either opened again already (any member goes there) or this
        user may open it again as a new room (an owner or a moderator, as this device last
        knew the room)."""
        if not self.unreadable:
            return False
        if self.replacement is not None:
            return True
        try:
            state = self._engine.room_state(self.room_id)
        except EngineError:  # left meanwhile
            return False
        return manages(state, self._engine.user_id)

    async def reopen(self) -> str | None:
        """The room opened again: the replacement there is, else a new room with its members
        and roles (see ``Engine.recreate_room``); the new room's id, or None with ``error``
        set."""
        replacement = self.replacement
        if replacement is not None:
            return replacement.id
        try:
            return await self._engine.recreate_room(self.room_id)
        except EngineError as e:
            self.error = str(e)
            self._changed()
            return None

    @property
    def uploads(self) -> list[Transfer]:
        """Documents being sent: their message exists only once uploaded."""
        shown = {m.ref for m in self._messages}
        return [t for ref, t in self.transfers.items()
                if t.direction == "upload" and ref not in shown]

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
        document = None
        if message.kind is MessageKind.DOCUMENT and message.attachments:
            item = message.attachments[0]
            document = Document(item.file_name, item.key.plaintext_size, item.media_type)
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
            can_change=mine and message.recalled_at is None and message.kind is MessageKind.TEXT,
            reply=None if message.reply_to is None else self._quote(message.reply_to),
            document=document,
        )

    def _quote(self, ref: MessageRef) -> Quote:
        parent = next((m for m in self._messages if m.ref == ref), None)
        if parent is None:
            try:
                parent = self._engine.find_message(ref.client_id)
            except EngineError:  # not in this device's cache (joined later, expired)
                return Quote("", None)
        body = parent.body if parent.recalled_at is None else None
        if body is None and parent.attachments and parent.recalled_at is None:
            body = parent.attachments[0].file_name
        excerpt = None if body is None else body[:QUOTE_CHARS]
        return Quote(self._people.get(parent.sender_user).name, excerpt)

    # -- actions -----------------------------------------------------------------------------
    def reply(self, ref: MessageRef | None) -> None:
        """Answer ``ref`` with the next message sent (None: a plain message again)."""
        self.reply_to, self.editing = ref, None
        self._changed()

    def edit(self, ref: MessageRef | None) -> None:
        """Put one of this user's messages in the composer, to replace its text on send
        (None: give up the edit, and its text)."""
        message = next((m for m in self._messages if m.ref == ref), None)
        self.editing, self.reply_to = (ref if message is not None else None), None
        self.draft = (message.body or "") if message is not None else ""
        self._changed()

    async def send(self) -> bool:
        """Send the draft (or the edit it carries); on failure the draft stays and ``error``
        says why."""
        body = self.draft.strip()
        if not body:
            return False
        try:
            if self.editing is not None:
                await self._engine.edit(self.editing, body)
            else:
                await self._engine.send_text(self.room_id, body, urgent=self.urgent,
                                             reply_to=self.reply_to)
        except EngineError as e:
            self.error = str(e)
            self._changed()
            return False
        self.draft, self.urgent, self.error = "", False, None
        self.reply_to = self.editing = None
        self._load(max(PAGE, len(self._messages) + 1))
        return True

    async def acknowledge(self, ref: MessageRef) -> None:
        await self._act(self._engine.acknowledge(ref))

    async def recall(self, ref: MessageRef) -> None:
        await self._act(self._engine.recall(ref))

    async def _act(self, action: Awaitable[None]) -> bool:
        """Run an engine action; its failure becomes ``error``. The timeline is read again
        either way, since the engine keeps its state unchanged when it refuses."""
        try:
            await action
        except (EngineError, DocumentError) as e:
            self.error = str(e)
            ok = False
        else:
            self.error = None
            ok = True
        self._load(max(PAGE, len(self._messages)))
        return ok

    # -- documents ---------------------------------------------------------------------------
    async def send_document(self, path: Path) -> bool:
        """Encrypt and upload the file at ``path``, then announce it; ``transfers`` follows
        the upload. On refusal (type, size, lost relay) nothing is sent and ``error`` says
        why."""
        self.encrypting += 1
        self._changed()
        try:
            ref = await self._engine.send_file(self.room_id, path)
        except (EngineError, DocumentError) as e:
            self.error = str(e)
            self._drop_uploads()
            self._changed()
            return False
        finally:
            self.encrypting -= 1
        self.transfers.pop(ref, None)
        self.error = None
        self._load(max(PAGE, len(self._messages) + 1))
        return True

    async def fetch(self, ref: MessageRef) -> bool:
        """Download a received document into the encrypted cache (``transfers`` follows it);
        then it can be saved."""
        ok = await self._act(self._engine.fetch_file(ref))
        self.transfers.pop(ref, None)
        if ok:
            self.fetched.add(ref)
        self._changed()
        return ok

    async def save(self, ref: MessageRef, destination: Path) -> int | None:
        """Decrypt a fetched document to ``destination``, the user's choice; its size."""
        try:
            size = await self._engine.export_file(ref, destination)
        except (EngineError, DocumentError, OSError) as e:
            self.error = str(e)
            self._changed()
            return None
        return size

    def _drop_uploads(self) -> None:
        """Forget the progress of a failed upload (its reference never reaches the caller)."""
        self.transfers = {ref: t for ref, t in self.transfers.items()
                          if t.direction != "upload"}

    async def mark_read(self) -> None:
        """Tell the senders the room was read up to its newest message from someone else."""
        others = [m for m in self._messages if m.sender_user != self._engine.user_id]
        if others and others[-1].status < MessageStatus.READ:
            await self._engine.mark_read(self.room_id, others[-1].ref)
            self._load(max(PAGE, len(self._messages)))

    def close(self) -> None:
        self._unsubscribe()
        self._unobserve_people()


_ROOM_EVENTS = (
    MessageReceived,
    MessageSent,
    ReceiptReceived,
    RoomChanged,
    MessageChanged,
    TransferProgress,
)
