"""Words as a French user types them: without case or accents.

Close to what FTS5's ``unicode61 remove_diacritics 2`` tokenizer does, so what a user types
into a search box matches the directory cache and the message index alike.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Letters and digits; "_" separates words, as it does for unicode61.
_BARE_WORD = re.compile(r"[^\W_]+")
# A word as written, accents typed as separate combining marks (NFD input) included.
_WORD = re.compile(r"(?:[^\W_][\u0300-\u036f]*)+")


def fold(text: str) -> list[str]:
    """Words of ``text`` without case or accents ("Hélène-Zoé" → ["helene", "zoe"])."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _BARE_WORD.findall(bare)


@dataclass(frozen=True, slots=True)
class Span:
    """A word of a text: where it is, and its folded form(s)."""

    start: int
    end: int
    folded: tuple[str, ...]


def spans(text: str) -> list[Span]:
    return [Span(m.start(), m.end(), tuple(fold(m.group()))) for m in _WORD.finditer(text)]
