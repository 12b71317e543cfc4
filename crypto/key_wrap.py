"""Wrapping a 32-byte key (the SQLCipher database key) under a passphrase or unlock PIN.

The wrapping key is Argon2id(passphrase, salt); the key is sealed with
XChaCha20-Poly1305. The blob stores its own Argon2id parameters so they can be raised
later without a format change, and authenticates them (the whole header is the AEAD's
additional data). Format (integers big-endian), 101 bytes::

    "LKW1" || version u8 (=1) || opslimit u32 || memlimit u32 (bytes)
           || salt (16) || nonce (24) || XChaCha20-Poly1305(key) (32 + 16)

A blob is data that may have been swapped by an attacker, so unwrapping refuses
parameters below Argon2id's INTERACTIVE level (a cheap-to-brute-force downgrade) and
above its SENSITIVE level (a denial of service), before running the KDF.
"""

from __future__ import annotations

import os
import struct
import unicodedata
from collections.abc import Callable

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_ABYTES,
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
    crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
    crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
)
from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.pwhash import argon2id

from crypto.errors import CryptoError, DecodeError, UnsupportedError, ValidationError

MAGIC = b"LKW1"
VERSION = 1
KEY_SIZE = crypto_aead_xchacha20poly1305_ietf_KEYBYTES
SALT_SIZE = argon2id.SALTBYTES
NONCE_SIZE = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES

_PARAMS = struct.Struct(">4sBII")
HEADER_SIZE = _PARAMS.size + SALT_SIZE + NONCE_SIZE
BLOB_SIZE = HEADER_SIZE + KEY_SIZE + crypto_aead_xchacha20poly1305_ietf_ABYTES


class WrongPassphraseError(CryptoError):
    """The passphrase does not open this blob (or the blob's header or body was altered)."""


def _passphrase_bytes(passphrase: bytes | str) -> bytes:
    """NFC-normalise text so the same PIN typed on different keyboards derives the same key."""
    if isinstance(passphrase, str):
        return unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return passphrase


def _check_params(ops: int, mem: int, allow_weak: bool) -> None:
    min_ops = argon2id.OPSLIMIT_MIN if allow_weak else argon2id.OPSLIMIT_INTERACTIVE
    min_mem = argon2id.MEMLIMIT_MIN if allow_weak else argon2id.MEMLIMIT_INTERACTIVE
    if not min_ops <= ops <= argon2id.OPSLIMIT_SENSITIVE:
        raise ValidationError(f"Argon2id opslimit {ops} outside {min_ops}..SENSITIVE")
    if not min_mem <= mem <= argon2id.MEMLIMIT_SENSITIVE:
        raise ValidationError(f"Argon2id memlimit {mem} outside {min_mem}..SENSITIVE")


def _wrapping_key(passphrase: bytes | str, salt: bytes, ops: int, mem: int) -> bytes:
    return argon2id.kdf(KEY_SIZE, _passphrase_bytes(passphrase), salt, opslimit=ops, memlimit=mem)


def wrap_key(
    key: bytes,
    passphrase: bytes | str,
    *,
    ops: int = argon2id.OPSLIMIT_MODERATE,
    mem: int = argon2id.MEMLIMIT_MODERATE,
    allow_weak: bool = False,
    random: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """Seal ``key`` under ``passphrase``; ``allow_weak`` (tests only) permits cheap KDF costs."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"key must be {KEY_SIZE} bytes")
    if not passphrase:
        raise ValueError("passphrase must not be empty")
    _check_params(ops, mem, allow_weak)
    salt, nonce = random(SALT_SIZE), random(NONCE_SIZE)
    header = _PARAMS.pack(MAGIC, VERSION, ops, mem) + salt + nonce
    wrapping_key = _wrapping_key(passphrase, salt, ops, mem)
    return header + crypto_aead_xchacha20poly1305_ietf_encrypt(key, header, nonce, wrapping_key)


def unwrap_key(blob: bytes, passphrase: bytes | str, *, allow_weak: bool = False) -> bytes:
    """Open a blob made by ``wrap_key``.

    Raises DecodeError (malformed), UnsupportedError (unknown version), ValidationError
    (KDF parameters out of policy) or WrongPassphraseError (wrong passphrase or tampering:
    the two are indistinguishable by design).
    """
    if len(blob) < _PARAMS.size:
        raise DecodeError("key-wrap blob truncated")
    magic, version, ops, mem = _PARAMS.unpack_from(blob)
    if magic != MAGIC:
        raise DecodeError("not a Liaison key-wrap blob")
    if version != VERSION:
        raise UnsupportedError(f"key-wrap version {version}")
    if len(blob) != BLOB_SIZE:
        raise DecodeError(f"key-wrap blob must be {BLOB_SIZE} bytes")
    _check_params(ops, mem, allow_weak)
    salt = blob[_PARAMS.size : _PARAMS.size + SALT_SIZE]
    nonce = blob[_PARAMS.size + SALT_SIZE : HEADER_SIZE]
    wrapping_key = _wrapping_key(passphrase, salt, ops, mem)
    try:
        return crypto_aead_xchacha20poly1305_ietf_decrypt(
            blob[HEADER_SIZE:], blob[:HEADER_SIZE], nonce, wrapping_key
        )
    except NaclCryptoError as exc:
        raise WrongPassphraseError("wrong passphrase") from exc
