"""The conversation list: one row per room, urgent unacknowledged rooms pinned on top."""

from __future__ import annotations

from dataclasses import dataclass

from app.client.engine import Engine
from app.client.events import Event
from app.ui.viewmodels.observable import Observable
from storage.rooms import RoomKind, RoomOverview
from storage.text import fold

SEARCH_HITS = 50  # messages the search looks at; their rooms join the name matches

KIND_ICONS = {  # names of flet.Icons members, kept as text so that this module needs no Flet
    RoomKind.DIRECT: "PERSON",
    RoomKind.GROUP: "GROUPS",
    RoomKind.SERVICE: "LOCAL_HOSPITAL",
    RoomKind.PATIENT: "PERSONAL_INJURY",
    RoomKind.PROJECT: "WORK",
}


@dataclass(frozen=True, slots=True)
class RoomRow:
    room_id: str
    name: str
    kind: RoomKind
    icon: str
    preview: str | None  # the start of the last message's text; None if recalled or none
    time: float | None  # the last message's time; None for a room with no message yet
    unread: int
    urgent: bool  # holds an urgent message this user has not acknowledged
    unreadable: bool  # this device can no longer read what arrives there
    replaced: bool  # unreadable, and opened again as a new room (Engine.replacement)


class ConversationList(Observable):
    """``rows`` as filtered by ``kind`` and ``query``, and ``unread``, this user's unread
    messages in every room whatever the filter (the window title's count); re-read on every
    engine event."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self.kind: RoomKind | None = None
        self.query = ""
        self.rows: list[RoomRow] = []
        self.unread = 0
        self._unsubscribe = engine.subscribe(self._on_event)
        self.refresh()

    def _on_event(self, _event: Event) -> None:
        self.refresh()

    def filter(self, kind: RoomKind | None = None, query: str | None = None) -> None:
        """Show only rooms of ``kind`` (None: all) whose name has words starting with the
        query's words, or with a message that has, ignoring case and accents."""
        self.kind = kind
        if query is not None:
            self.query = query
        self.refresh()

    def refresh(self) -> None:
        """Read the room list again: one query in the engine, already in the order shown
        (urgent to acknowledge first, then the most recently active)."""
        words = fold(self.query)
        found = self._found_in_messages() if words else {}
        overview = self._engine.room_overview()
        self.unread = sum(line.unread for line in overview)
        self.rows = [
            _row(line, found.get(line.room.id),
                 line.unreadable and self._engine.replacement(line.room.id) is not None)
            for line in overview
            if (self.kind is None or line.room.kind is self.kind)
            and (_matches(line.room.name, words) or line.room.id in found)
        ]
        self._changed()

    def _found_in_messages(self) -> dict[str, str]:
        """Room id -> the passage of its best message matching the query (the engine's
        search of this device's cache)."""
        found: dict[str, str] = {}
        for hit in self._engine.search(self.query, limit=SEARCH_HITS).hits:
            found.setdefault(hit.room_id, "".join(part.text for part in hit.snippet))
        return found

    def close(self) -> None:
        self._unsubscribe()


def _matches(name: str, words: list[str]) -> bool:
    name_words = fold(name)
    return all(any(n.startswith(w) for n in name_words) for w in words)


def _row(line: RoomOverview, passage: str | None, replaced: bool) -> RoomRow:
    """``passage``: the matching text a search found in the room, shown instead of the last
    message."""
    has_message = line.last_sender is not None
    return RoomRow(
        room_id=line.room.id,
        name=line.room.name,
        kind=line.room.kind,
        icon=KIND_ICONS[line.room.kind],
        preview=passage or line.last_preview,
        time=line.last_activity if has_message else None,
        unread=line.unread,
        urgent=line.unacknowledged_urgent > 0,
        unreadable=line.unreadable,
        replaced=replaced,
    )
