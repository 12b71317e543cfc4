"""Every user-visible string of the app, in French (the default) or English.

The language comes from the system locale at start and can be switched in settings; views
re-render when it changes. A key missing from a catalogue is a bug, so it raises rather than
showing the key to a nurse.
"""

from __future__ import annotations

import locale
import os
from collections.abc import Callable, Mapping

from app.ui.catalogues import en, fr

CATALOGUES: Mapping[str, Mapping[str, str]] = {"fr": fr.MESSAGES, "en": en.MESSAGES}
DEFAULT_LANGUAGE = "fr"


def system_language() -> str:
    """The catalogue matching the system locale (LC_ALL, LC_MESSAGES, LANG), else French."""
    candidates = [os.environ.get(name, "") for name in ("LC_ALL", "LC_MESSAGES", "LANG")]
    candidates.append(locale.getlocale()[0] or "")
    for value in candidates:
        language = value.split("_")[0].split(".")[0].lower()
        if language in CATALOGUES:
            return language
        if value:  # the first locale set decides, even when we have no catalogue for it
            break
    return DEFAULT_LANGUAGE


class Translator:
    """Looks strings up in the current catalogue; ``switch`` changes it for every listener."""

    def __init__(self, language: str | None = None) -> None:
        self._language = DEFAULT_LANGUAGE
        self._listeners: list[Callable[[], None]] = []
        self.switch(language or system_language())

    @property
    def language(self) -> str:
        return self._language

    def switch(self, language: str) -> None:
        if language not in CATALOGUES:
            raise ValueError(f"no catalogue for language {language!r}")
        changed = language != self._language
        self._language = language
        if changed:
            for listener in list(self._listeners):
                listener()

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def __call__(self, key: str, **values: object) -> str:
        return CATALOGUES[self._language][key].format(**values)
