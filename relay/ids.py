"""Identifiers and one-way hashes of bearer secrets (tokens, invite codes)."""

from __future__ import annotations

import hashlib
import secrets


def new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(12)


def token_hash(token: str) -> bytes:
    """Tokens are stored only hashed: a copy of the database logs nobody in."""
    return hashlib.sha256(token.encode()).digest()


def invite_hash(code: str) -> bytes:
    return hashlib.sha256(b"liaison-invite\x00" + code.strip().upper().encode()).digest()
