"""Device settings as JSON values by key (notification preferences, last sync cursor…).

Kept inside the encrypted database: some reveal habits or clinical context (muted rooms,
the last patient opened).
"""

from __future__ import annotations

import json

from storage.database import Database

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]


class Settings:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, key: str, default: Json = None) -> Json:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set(self, key: str, value: Json) -> None:
        self._db.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def delete(self, key: str) -> None:
        self._db.execute("DELETE FROM settings WHERE key = ?", (key,))
