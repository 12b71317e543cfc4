"""The private halves of the KeyPackages this device published, found by KeyPackage ref.

A one-time KeyPackage is consumed by the Welcome that uses it (its private keys are deleted,
for forward secrecy); a last-resort one may be used by several Welcomes and is kept.
"""

from __future__ import annotations

from storage.database import Database


class KeyPackageStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self, ref: bytes, private_parts: bytes, *, created_at: float, last_resort: bool = False
    ) -> None:
        self._db.execute(
            "INSERT INTO key_packages (ref, private_parts, last_resort, created_at)"
            " VALUES (?, ?, ?, ?)",
            (ref, private_parts, int(last_resort), created_at),
        )

    def take(self, ref: bytes) -> bytes | None:
        """The private parts for ``ref``; a one-time package's are deleted as they are read."""
        with self._db.transaction():
            row = self._db.execute(
                "SELECT private_parts, last_resort FROM key_packages WHERE ref = ?", (ref,)
            ).fetchone()
            if row is not None and not row[1]:
                self._db.execute("DELETE FROM key_packages WHERE ref = ?", (ref,))
        return None if row is None else row[0]

    def one_time_count(self) -> int:
        """How many one-time packages remain unused (the engine tops the relay up)."""
        (count,) = self._db.execute(
            "SELECT count(*) FROM key_packages WHERE last_resort = 0"
        ).fetchone()
        return int(count)
