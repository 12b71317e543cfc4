"""The always-visible connection state: connected, reconnecting, or offline with N waiting."""

from __future__ import annotations

from enum import StrEnum

from app.client.connection import State
from app.client.engine import Engine
from app.client.events import ConnectionChanged, Event
from app.ui.viewmodels.observable import Observable


class Link(StrEnum):
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"


_LINKS = {
    State.CONNECTED: Link.CONNECTED,
    State.CONNECTING: Link.RECONNECTING,
    State.RECONNECTING: Link.RECONNECTING,
}  # every other state (offline, revoked, unauthenticated) is offline for the user


class ConnectionBanner(Observable):
    """``link`` and ``waiting`` (messages and receipts the relay has not accepted yet)."""

    def __init__(self, engine: Engine, state: State = State.OFFLINE) -> None:
        """``state``: the connection's state now, for a banner made after the engine started
        (a second window)."""
        super().__init__()
        self._engine = engine
        self.link = _LINKS.get(state, Link.OFFLINE)
        self.waiting = engine.unsent()
        self._unsubscribe = engine.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, ConnectionChanged):
            self.link = _LINKS.get(event.state, Link.OFFLINE)
        self.refresh()

    def refresh(self) -> None:
        """Count the waiting frames again: after a send, and on every engine event."""
        self.waiting = self._engine.unsent()
        self._changed()

    @property
    def text_key(self) -> str:
        """The catalogue key of the banner's text (it takes ``count`` for the waiting ones)."""
        if self.link is Link.OFFLINE:
            return "banner.offline_waiting" if self.waiting else "banner.offline"
        return f"banner.{self.link.value}"

    def close(self) -> None:
        self._unsubscribe()
