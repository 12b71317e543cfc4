"""Device settings as JSON values by key (notification preferences, last sync cursor…).

Kept inside the encrypted database: some reveal habits or clinical context (muted rooms,
the last patient opened).
"""

from __future__ import annotations

import json

from storage.database import Database

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]


class Settings:
    """The engine asks some settings for every message sent (whether the room was opened again
    elsewhere): the values read, and the keys found missing, are kept as stored text,
    forgotten when set or deleted, and all at once after any rollback, which may have undone
    a change. Values are parsed at every ``get``, so a caller may change what it gets."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cached: dict[str, str | None] = {}  # key -> stored JSON text, None when missing
        self._rollbacks = db.rollbacks

    def _cache(self) -> dict[str, str | None]:
        if self._rollbacks != self._db.rollbacks:
            self._cached.clear()
            self._rollbacks = self._db.rollbacks
        return self._cached

    def get(self, key: str, default: Json = None) -> Json:
        cache = self._cache()
        if key in cache:
            text = cache[key]
        else:
            row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
            text = cache[key] = None if row is None else row[0]
        return default if text is None else json.loads(text)

    def set(self, key: str, value: Json) -> None:
        self._cache().pop(key, None)
        self._db.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def delete(self, key: str) -> None:
        self._cache().pop(key, None)
        self._db.execute("DELETE FROM settings WHERE key = ?", (key,))
