"""deserialization.json: the variable-length vector header (RFC 9420 §2.1.2), both directions."""

from __future__ import annotations

from crypto.codec import Reader, varint
from crypto.vectors.common import Case, expect, unhex


def check(case: Case) -> None:
    header = unhex(case["vlbytes_header"])
    r = Reader(header)
    expect("decoded length", r.varint(), case["length"])
    r.done()
    expect("re-encoded header", varint(case["length"]), header)
