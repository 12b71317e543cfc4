"""Notices of new messages while the user looks elsewhere.

A notice never carries a message's text, its sender or its room's name (a patient room is
named after its patient): it shows on a locked screen too, to whoever stands near the phone
or the ward's desktop. It says how many messages arrived and whether one is urgent; opening
it, once unlocked, opens the room of the latest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from app.client.engine import Engine
from app.client.events import Event, MessageReceived
from app.ui.viewmodels.observable import Observable
from storage.messages import MessageKind, Priority

_NOTIFIED = (MessageKind.TEXT, MessageKind.DOCUMENT)  # not receipts' or room events' lines
NOTICE_SECONDS = 8.0  # long enough to reach for the phone, short enough not to pile up


@dataclass(frozen=True, slots=True)
class Notice:
    room_id: str  # the latest message's room: where opening the notice goes
    count: int  # messages since the notice was last dismissed or opened
    urgent: bool  # one of them at least is urgent

    @property
    def text_key(self) -> str:
        """The catalogue key of the notice's text (it takes ``count``)."""
        return "notice.urgent" if self.urgent else "notice.new"


class Notifications(Observable):
    """``notice``, None when there is nothing to tell; ``looking_at`` says which room the
    window shows, if any (its messages need no notice). A notice shows for ``lasts`` seconds
    after its latest message; a message after that starts a new one."""

    def __init__(self, engine: Engine, looking_at: Callable[[], str | None], *,
                 lasts: float = NOTICE_SECONDS, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        super().__init__()
        self._engine, self._looking_at = engine, looking_at
        self._lasts, self._clock = lasts, clock
        self._until = 0.0  # when the notice on screen goes away
        self.notice: Notice | None = None
        self._unsubscribe = engine.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, MessageReceived) and self._tells(event):
            message, now = event.message, self._clock()
            before = self.notice if now < self._until else None
            self._until = now + self._lasts
            self.notice = Notice(
                room_id=event.room.id,
                count=1 + (before.count if before else 0),
                urgent=message.priority is Priority.URGENT or bool(before and before.urgent),
            )
            self._changed()

    def _tells(self, event: MessageReceived) -> bool:
        message = event.message
        return (message.sender_user != self._engine.user_id and message.kind in _NOTIFIED
                and event.room.id != self._looking_at())

    def dismiss(self, notice: Notice | None = None) -> None:
        """The notice was seen (closed, or opened): the next message starts a new count.
        ``notice``: only if it is still that one (a later one replaced it on screen)."""
        if notice is None or notice == self.notice:
            self.notice = None
            self._changed()

    def close(self) -> None:
        self._unsubscribe()
