"""The hospital directory, cached for offline lookup: find a colleague with no network.

Search is by word prefix, ignoring case and accents, over names, specialty and services: on a
phone keyboard "hel dub" finds "Hélène Dubois" and "cardio" the cardiology team.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from storage.database import Database
from storage.text import fold


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryEntry:
    """A colleague as the relay's directory describes them: never a phone number."""

    user_id: str
    display_name: str
    profession: str
    specialty: str | None = None
    services: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    rpps: str | None = None
    roles: tuple[str, ...] = ()
    active: bool = True


_COLUMNS = "user_id, display_name, profession, specialty, services, sites, rpps, roles, active"


def _search_key(entry: DirectoryEntry) -> str:
    words = fold(" ".join((entry.display_name, entry.specialty or "", *entry.services)))
    return " " + " ".join(words)


def _entry(row: tuple) -> DirectoryEntry:
    user_id, name, profession, specialty, services, sites, rpps, roles, active = row
    return DirectoryEntry(
        user_id=user_id, display_name=name, profession=profession, specialty=specialty,
        services=tuple(json.loads(services)), sites=tuple(json.loads(sites)), rpps=rpps,
        roles=tuple(json.loads(roles)), active=bool(active),
    )


class DirectoryCache:
    def __init__(self, db: Database) -> None:
        self._db = db

    def replace_all(self, entries: Iterable[DirectoryEntry]) -> None:
        """Take a full directory sync: whoever is not in it any more is forgotten."""
        with self._db.transaction():
            self._db.execute("DELETE FROM directory")
            self.save(entries)

    def save(self, entries: Iterable[DirectoryEntry]) -> None:
        """Add or refresh these entries (an online search's results), keeping the others."""
        self._db.executemany(
            f"INSERT OR REPLACE INTO directory ({_COLUMNS}, search_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (e.user_id, e.display_name, e.profession, e.specialty,
                 json.dumps(e.services), json.dumps(e.sites), e.rpps, json.dumps(e.roles),
                 int(e.active), _search_key(e))
                for e in entries
            ],
        )

    def get(self, user_id: str) -> DirectoryEntry | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM directory WHERE user_id = ?", (user_id,)
        ).fetchone()
        return None if row is None else _entry(row)

    def everyone(self) -> list[DirectoryEntry]:
        """Every cached entry, inactive ones too: a former colleague's old messages still
        carry their name."""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM directory ORDER BY display_name")
        return [_entry(row) for row in rows]

    def search(self, query: str, *, limit: int = 20) -> list[DirectoryEntry]:
        """Active colleagues with a word starting with each query word, sorted by name."""
        words = fold(query)
        if not words:
            return []
        # Folded words are bare \w characters: no LIKE wildcard can reach the pattern.
        condition = " AND ".join("search_key LIKE ?" for _ in words)
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM directory WHERE active = 1 AND {condition}"
            " ORDER BY display_name, user_id LIMIT ?",
            (*(f"% {w}%" for w in words), limit),
        )
        return [_entry(row) for row in rows]
