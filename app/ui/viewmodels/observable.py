"""Change notification from a view-model to the view that draws it."""

from __future__ import annotations

from collections.abc import Callable


class Observable:
    """A view-model calls ``_changed`` after its state moves; views re-draw on it."""

    def __init__(self) -> None:
        self._observers: list[Callable[[], None]] = []

    def observe(self, observer: Callable[[], None]) -> Callable[[], None]:
        """Call ``observer`` on every change from now on; returns the function that stops it."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def _changed(self) -> None:
        for observer in list(self._observers):
            observer()
