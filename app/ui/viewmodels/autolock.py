"""Auto-lock: after so many minutes without the user touching the app, it locks (sans-I/O: the
shell feeds it activity and asks it, on a timer, whether the time is up)."""

from __future__ import annotations

import time
from collections.abc import Callable

from app.client.engine import Engine
from app.ui.profile import Profile
from app.ui.viewmodels.unlock import Unlock


class IdleTimer:
    """``expired`` once ``minutes`` have passed since the last ``touch``."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.minutes = minutes
        self._last = clock()

    def touch(self) -> None:
        self._last = self._clock()

    def remaining(self) -> float:
        """Seconds left before the lock; 0 once expired."""
        return max(0.0, self._last + self.minutes * 60 - self._clock())

    def expired(self) -> bool:
        return self.remaining() == 0.0


class Relock(Unlock):
    """The unlock screen of a running app: the right PIN gives back the engine already open
    (the PIN's attempt limit and wipe apply as at start)."""

    def __init__(self, profile: Profile, engine: Engine) -> None:
        super().__init__(profile, engine.device_id)
        self._engine = engine

    def _opened(self, key: bytes) -> Engine:
        return self._engine
