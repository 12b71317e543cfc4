"""Group commit: one fsync for every message sealed or stored while the previous one ran.

A sealed message must be durable before its ciphertext leaves the device (after a power cut
the room's ratchet would otherwise hand out the same generation again), and a delivered one
before the relay is told it may drop it. Their transactions commit without an fsync of their
own, atomic and visible at once; ``durable`` then waits for one ``Database.sync``. That runs
in a thread, so the event loop seals and stores the next messages meanwhile, and they share
the next fsync.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from storage.database import Database


class GroupCommit:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._synced = 0  # the database's lazy commits known to be durable
        self._running: asyncio.Task[None] | None = None
        # One thread of its own, always the same: handing each fsync to the loop's default
        # pool cost the event loop more than the fsync's own bookkeeping.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsync")

    def close(self) -> None:
        self._thread.shutdown(wait=False)

    async def durable(self) -> None:
        """Return once every commit made before the call is durable (OSError if the disk
        refuses: then nothing may be sent or acknowledged)."""
        target = self._db.lazy_commits
        while self._synced < target:
            if self._running is None:
                self._running = asyncio.get_running_loop().create_task(self._sync())
            await asyncio.shield(self._running)

    async def _sync(self) -> None:
        target = self._db.lazy_commits
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._db.sync)
        finally:
            self._running = None
        self._synced = max(self._synced, target)
