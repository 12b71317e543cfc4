"""Binary fields on the wire: base64url without padding in JSON, raw bytes in Python."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict: only the base64url alphabet, padding optional."""
    if not _ALPHABET.fullmatch(text):
        raise ValueError("invalid base64url text")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"invalid base64url: {e}") from None


def _to_bytes(v: Any) -> bytes:
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v)
    if isinstance(v, str):
        return b64decode(v)
    raise ValueError("expected base64url text")


B64 = Annotated[
    bytes,
    BeforeValidator(_to_bytes),
    PlainSerializer(b64encode, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "base64url",
                    "pattern": "^[A-Za-z0-9_-]*={0,2}$"}),
]
