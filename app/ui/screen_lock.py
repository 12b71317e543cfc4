"""The auto-lock of a window: after the configured idle time it hides everything behind the
unlock screen (no message content stays on screen), and the PIN brings the window back.

Activity is what the window sees: keys pressed, and every action and navigation the shell
runs. A profile without an unlock PIN has nothing to ask, so it does not lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import flet as ft

from app.client.engine import Engine
from app.ui.i18n import Translator
from app.ui.preferences import Preferences
from app.ui.profile import Profile
from app.ui.unlock_view import UnlockView
from app.ui.viewmodels.autolock import IdleTimer, Relock

CHECK_SECONDS = 5.0  # the lock comes at most this late


class ScreenLock:
    """``touch`` on activity; ``restore`` redraws the window once the PIN is right."""

    def __init__(self, page: ft.Page, profile: Profile, engine: Engine, t: Translator,
                 restore: Callable[[], None]) -> None:
        self._page, self._profile, self._engine, self._t = page, profile, engine, t
        self._restore = restore
        self.enabled = profile.pin_lock().is_enabled(engine.device_id)
        self.timer = IdleTimer(Preferences.load(profile.directory).lock_minutes)
        self.locked = False
        self._closed = False
        page.on_keyboard_event = lambda _e: self.touch()
        if self.enabled:
            page.run_task(self._watch)

    def touch(self) -> None:
        self.timer.touch()

    async def _watch(self) -> None:
        while not self._closed:
            left = CHECK_SECONDS if self.locked else self.timer.remaining()
            await asyncio.sleep(min(CHECK_SECONDS, left) + 0.1)
            if not self.locked and not self._closed and self.timer.expired():
                self.lock()

    def lock(self) -> None:
        page = self._page
        self.locked = True
        page.pop_dialog()
        page.navigation_bar = None
        unlock = UnlockView(Relock(self._profile, self._engine), self._t, self._unlocked)
        page.controls = [unlock.control]
        page.update()

    def _unlocked(self, _engine: Engine) -> None:
        self.locked = False
        self.touch()
        self._restore()

    def close(self) -> None:
        self._closed = True
