"""A minimal PDF writer for text transcripts: A4 pages of Helvetica lines, nothing else.

Hand-written rather than a dependency because a transcript needs only lines of text. Text is
encoded in WinAnsiEncoding (cp1252), which every PDF reader maps for the standard Helvetica,
so French accents render without embedding a font; a character outside it (e.g. Vietnamese
"ễ") is written without its diacritics rather than dropped.
"""

from __future__ import annotations

import textwrap
import unicodedata
from collections.abc import Sequence

PAGE_WIDTH, PAGE_HEIGHT = 595, 842  # A4 in points
MARGIN = 56
FONT_SIZE = 10
LEADING = 13
COLUMNS = 95  # characters of Helvetica 10 pt that fit between the margins, with some slack
LINES_PER_PAGE = (PAGE_HEIGHT - 2 * MARGIN) // LEADING


def win_ansi(text: str) -> bytes:
    """``text`` in cp1252; characters it lacks lose their diacritics, or become ``?``."""
    out = bytearray()
    for char in text:
        try:
            out += char.encode("cp1252")
        except UnicodeEncodeError:
            base = unicodedata.normalize("NFKD", char).encode("cp1252", "ignore")
            out += base or b"?"
    return bytes(out)


def _literal(text: str) -> bytes:
    """A PDF string literal: backslash, parentheses escaped; no line breaks inside."""
    raw = win_ansi(text.replace("\r", " ").replace("\n", " "))
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def wrap(lines: Sequence[str]) -> list[str]:
    """The lines broken to the page's width (an empty line stays, as a gap)."""
    wrapped: list[str] = []
    for line in lines:
        wrapped += textwrap.wrap(line, COLUMNS, break_long_words=True,
                                 replace_whitespace=False) or [""]
    return wrapped


def _page_stream(lines: Sequence[str]) -> bytes:
    ops = [b"BT", b"/F1 %d Tf" % FONT_SIZE, b"%d TL" % LEADING,
           b"%d %d Td" % (MARGIN, PAGE_HEIGHT - MARGIN - FONT_SIZE)]
    ops += [_literal(line) + b" '" for line in lines]
    ops.append(b"ET")
    return b"\n".join(ops)


def document(lines: Sequence[str], title: str) -> bytes:
    """A complete PDF (1.4) showing ``lines``, wrapped and paginated; ``title`` in its info."""
    text = wrap(lines) or [""]
    pages = [text[i:i + LINES_PER_PAGE] for i in range(0, len(text), LINES_PER_PAGE)]
    first_page = 4  # objects: 1 catalog, 2 page tree, 3 font, then page/content pairs, info
    page_ids = [first_page + 2 * i for i in range(len(pages))]
    info_id = first_page + 2 * len(pages)
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [%s] /Count %d >>"
           % (b" ".join(b"%d 0 R" % p for p in page_ids), len(pages)),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica"
           b" /Encoding /WinAnsiEncoding >>",
        info_id: b"<< /Title " + _literal(title) + b" /Producer (Liaison) >>",
    }
    for page_id, page in zip(page_ids, pages, strict=True):
        stream = _page_stream(page)
        objects[page_id] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d]"
                            b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
                            % (PAGE_WIDTH, PAGE_HEIGHT, page_id + 1))
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")  # the binary comment marks it binary
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offsets[n] for n in sorted(objects))
    out += (b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, info_id, xref))
    return bytes(out)
