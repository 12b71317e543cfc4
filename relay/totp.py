"""TOTP (RFC 6238, SHA-1, 6 digits, 30 s): the second factor for adding devices."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from urllib.parse import quote

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)

STEP = 30
DIGITS = 6


def new_secret() -> bytes:
    return os.urandom(20)


def code_at(secret: bytes, step: int) -> str:
    mac = hmac.new(secret, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def verify(secret: bytes, code: str, now: float, *, window: int = 1) -> int | None:
    """The matching time step (±window steps of clock drift), or None."""
    step = int(now // STEP)
    for s in range(step - window, step + window + 1):
        if hmac.compare_digest(code_at(secret, s), code):
            return s
    return None


def provisioning_uri(secret: bytes, account: str, issuer: str) -> str:
    label = quote(f"{issuer}:{account}", safe="")
    b32 = base64.b32encode(secret).decode().rstrip("=")
    return (f"otpauth://totp/{label}?secret={b32}&issuer={quote(issuer, safe='')}"
            f"&algorithm=SHA1&digits={DIGITS}&period={STEP}")


def seal(key: bytes, secret: bytes) -> bytes:
    """TOTP seeds are secrets: stored only sealed under a key derived from the org key."""
    nonce = os.urandom(24)
    return nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(secret, b"liaison-totp", nonce, key)


def unseal(key: bytes, blob: bytes) -> bytes:
    return crypto_aead_xchacha20poly1305_ietf_decrypt(blob[24:], b"liaison-totp", blob[:24], key)


def b32_secret(uri: str) -> bytes:
    """The secret inside an otpauth:// URI (what an authenticator app scans)."""
    from urllib.parse import parse_qs, urlparse

    b32 = parse_qs(urlparse(uri).query)["secret"][0]
    return base64.b32decode(b32 + "=" * (-len(b32) % 8))
