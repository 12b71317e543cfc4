"""Full-text search over message bodies: ranked, filtered by room and time, paginated.

The index (FTS5, ``unicode61 remove_diacritics 2``) ignores case and accents, so "hemoglobine"
finds "Hémoglobine". Query words of three letters or more match as word prefixes ("plaquet"
finds "plaquettes"); shorter ones ("à", "ST", "IV") match whole words, since as prefixes they
would match much of the vocabulary. All words must match; results come best first (bm25).
The user's text never reaches FTS5 syntax: it is cut into bare words, each quoted, so "NOT"
or "body:" are just words.

Snippets are cut here rather than by FTS5's ``snippet()``: SQLite would compute that for every
match before sorting, which costs more than the search itself on common words.

A stored body is indexed later, in a batch (``index_pending``, run by the engine every few
seconds and by every search first): indexing it in the transaction that stores it made each
commit write a new FTS5 segment, about half the cost of storing a received message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from storage.database import Database
from storage.messages import MessageRef
from storage.text import fold, spans

SNIPPET_WORDS = 16
MIN_PREFIX = 3


@dataclass(frozen=True, slots=True)
class Fragment:
    text: str
    match: bool  # highlight this part


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchHit:
    message_id: int
    ref: MessageRef
    room_id: str
    sender_user: str
    at: float
    snippet: tuple[Fragment, ...]  # the passage around the first match, "…" where cut


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: tuple[SearchHit, ...]
    next_offset: int | None  # pass as ``offset`` for the next page; None on the last one


def _matches(word: str, query_word: str) -> bool:
    return word.startswith(query_word) if len(query_word) >= MIN_PREFIX else word == query_word


def _term(query_word: str) -> str:
    return f'"{query_word}"*' if len(query_word) >= MIN_PREFIX else f'"{query_word}"'


def snippet(body: str, query_words: Sequence[str]) -> tuple[Fragment, ...]:
    """Up to SNIPPET_WORDS words of ``body`` from just before its first word that matches one
    of the (folded) ``query_words``, those words marked."""
    words = spans(body)
    matched = [any(_matches(w, q) for w in s.folded for q in query_words) for s in words]
    first = matched.index(True) if True in matched else 0
    lo = max(0, min(first - 3, len(words) - SNIPPET_WORDS))
    hi = min(len(words), lo + SNIPPET_WORDS)
    start = words[lo].start if lo else 0
    end = words[hi - 1].end if hi < len(words) else len(body)
    pieces: list[tuple[str, bool]] = [("…", False)] if start else []
    cursor = start
    for span, match in zip(words[lo:hi], matched[lo:hi], strict=True):
        if match:
            pieces += [(body[cursor : span.start], False), (body[span.start : span.end], True)]
            cursor = span.end
    pieces += [(body[cursor:end], False), ("…" if end < len(body) else "", False)]
    merged: list[Fragment] = []
    for text, match in pieces:
        if not text:
            continue
        if merged and merged[-1].match == match:
            merged[-1] = Fragment(merged[-1].text + text, match)
        else:
            merged.append(Fragment(text, match))
    return tuple(merged)


class MessageSearch:
    def __init__(self, db: Database) -> None:
        self._db = db

    def index_pending(self) -> int:
        """Index the bodies stored since the last call, in one transaction; how many.

        Not durable on its own: power lost before the next durable commit undoes the indexing
        and the dequeuing together, and the next call does both again.
        """
        if self._db.execute("SELECT 1 FROM message_fts_pending LIMIT 1").fetchone() is None:
            return 0
        with self._db.transaction(durable=False):
            indexed = self._db.execute(
                "INSERT INTO message_fts (rowid, body) SELECT m.id, m.body"
                " FROM message_fts_pending p JOIN messages m ON m.id = p.message_id"
                " WHERE m.body IS NOT NULL"
            ).rowcount
            self._db.execute("DELETE FROM message_fts_pending")
        return indexed

    def search(
        self,
        query: str,
        *,
        rooms: Sequence[str] = (),
        since: float | None = None,
        until: float | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> SearchPage:
        """Messages matching every word of ``query``, in ``rooms`` (all when empty), sent in
        [since, until)."""
        words = fold(query)
        if not words:
            return SearchPage((), None)
        self.index_pending()
        rows = self._db.execute(
            "SELECT m.id, m.sender_device, m.client_id, m.room_id, m.sender_user, m.sort_ts,"
            " m.body FROM message_fts JOIN messages m ON m.id = message_fts.rowid"
            " WHERE message_fts MATCH ?1"
            " AND (?2 IS NULL OR m.room_id IN (SELECT value FROM json_each(?2)))"
            " AND (?3 IS NULL OR m.sort_ts >= ?3) AND (?4 IS NULL OR m.sort_ts < ?4)"
            " ORDER BY bm25(message_fts), m.id LIMIT ?5 OFFSET ?6",
            (
                " ".join(_term(word) for word in words),
                json.dumps(list(rooms)) if rooms else None,
                since,
                until,
                limit + 1,
                offset,
            ),
        ).fetchall()
        hits = tuple(
            SearchHit(
                message_id=id_, ref=MessageRef(device, client), room_id=room_id,
                sender_user=user, at=float(at), snippet=snippet(body, words),
            )
            for id_, device, client, room_id, user, at, body in rows[:limit]
        )
        return SearchPage(hits, offset + limit if len(rows) > limit else None)
