"""Thin wrappers over the primitives MLS needs: HKDF/HMAC-SHA256, X25519, Ed25519, AEADs.

Every function takes and returns ``bytes`` and maps library exceptions onto
``crypto.errors`` so no third-party exception type leaks upward. PyNaCl is called through
``nacl.bindings`` (only functions also present in PyNaCl 1.5) to skip object construction
on the per-message path. Key lengths are checked here because several bindings pass raw
pointers to libsodium without checking them.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from nacl import exceptions as nacl_exc
from nacl.bindings import (
    crypto_scalarmult,
    crypto_scalarmult_base,
    crypto_sign,
    crypto_sign_open,
    crypto_sign_seed_keypair,
)

from crypto.errors import CryptoError, DecryptError

_HASH_LEN: Final = 32
_MAX_EXPAND: Final = 255 * _HASH_LEN
_TAG_LEN: Final = 16
_hmac_digest = hmac.digest


def sha256(data: bytes) -> bytes:
    """SHA-256 digest."""
    return hashlib.sha256(data).digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 via OpenSSL's one-shot path (no HMAC object)."""
    return _hmac_digest(key, data, "sha256")


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 §2.2); an empty salt equals HashLen zero bytes under HMAC."""
    return _hmac_digest(salt, ikm, "sha256")


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869 §2.3); raises ValueError outside 0..255*HashLen."""
    if not 0 <= length <= _MAX_EXPAND:
        raise ValueError("HKDF-Expand length out of range")
    if length <= _HASH_LEN:  # the common case: one block, no list or join
        return _hmac_digest(prk, info + b"\x01", "sha256")[:length]
    blocks: list[bytes] = []
    block = b""
    for counter in range(1, -(-length // _HASH_LEN) + 1):
        block = _hmac_digest(prk, block + info + bytes((counter,)), "sha256")
        blocks.append(block)
    return b"".join(blocks)[:length]


def x25519(sk: bytes, pk: bytes) -> bytes:
    """X25519 shared secret; rejects wrong lengths and low-order points (all-zero output)."""
    if len(sk) != 32 or len(pk) != 32:
        raise CryptoError("X25519 keys are 32 bytes")
    try:
        return crypto_scalarmult(sk, pk)
    except nacl_exc.RuntimeError:  # libsodium refuses an all-zero result
        raise CryptoError("X25519 shared secret is all zero (low-order public key)") from None


def x25519_public(sk: bytes) -> bytes:
    """X25519 public key for a 32-byte private key."""
    if len(sk) != 32:
        raise CryptoError("X25519 private keys are 32 bytes")
    return crypto_scalarmult_base(sk)


@lru_cache(maxsize=16)
def _sign_keypair(seed: bytes) -> tuple[bytes, bytes]:
    """(public, 64-byte secret) for a seed; cached because a member signs with one key a lot."""
    if len(seed) != 32:
        raise CryptoError("Ed25519 seeds are 32 bytes")
    return crypto_sign_seed_keypair(seed)


def ed25519_public(seed32: bytes) -> bytes:
    """Ed25519 public key for a 32-byte seed (the RFC 8032 private key)."""
    return _sign_keypair(seed32)[0]


def ed25519_sign(seed32: bytes, msg: bytes) -> bytes:
    """64-byte detached Ed25519 signature."""
    return crypto_sign(msg, _sign_keypair(seed32)[1])[:64]


def ed25519_verify(pub: bytes, msg: bytes, sig: bytes) -> bool:
    """True iff ``sig`` is valid; malformed keys or signatures give False, never an error."""
    if len(pub) != 32 or len(sig) != 64:
        return False
    try:
        crypto_sign_open(sig + msg, pub)
    except nacl_exc.CryptoError:
        return False
    return True


class Aead(Protocol):
    """An RFC 5116 AEAD as HPKE and MLS use it; ``id`` is the HPKE AEAD identifier."""

    id: int
    key_size: int
    nonce_size: int

    def seal(self, key: bytes, nonce: bytes, aad: bytes, pt: bytes) -> bytes:
        """Encrypt ``pt``; the result is ciphertext followed by the 16-byte tag."""

    def open(self, key: bytes, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        """Decrypt ``ct``; raises DecryptError if authentication fails."""


@lru_cache(maxsize=32)
def _aesgcm(key: bytes) -> AESGCM:
    """AESGCM objects run the key schedule on construction; reuse them per key."""
    return AESGCM(key)


class _Aes128Gcm:
    """AES-128-GCM from ``cryptography`` (OpenSSL, hardware AES where available)."""

    __slots__ = ()
    id = 0x0001
    key_size = 16
    nonce_size = 12

    def seal(self, key: bytes, nonce: bytes, aad: bytes, pt: bytes) -> bytes:
        if len(key) != 16 or len(nonce) != 12:
            raise CryptoError("AES-128-GCM needs a 16-byte key and a 12-byte nonce")
        return _aesgcm(key).encrypt(nonce, pt, aad)

    def open(self, key: bytes, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        if len(key) != 16 or len(nonce) != 12:
            raise CryptoError("AES-128-GCM needs a 16-byte key and a 12-byte nonce")
        try:
            return _aesgcm(key).decrypt(nonce, ct, aad)
        except InvalidTag:
            raise DecryptError("AES-128-GCM authentication failed") from None


class _ChaCha20Poly1305:
    """ChaCha20-Poly1305 (RFC 8439) from ``cryptography``: its binding costs half of
    PyNaCl's per call, and every message takes two (sender data, content)."""

    __slots__ = ()
    id = 0x0003
    key_size = 32
    nonce_size = 12

    def seal(self, key: bytes, nonce: bytes, aad: bytes, pt: bytes) -> bytes:
        if len(key) != 32 or len(nonce) != 12:
            raise CryptoError("ChaCha20-Poly1305 needs a 32-byte key and a 12-byte nonce")
        return ChaCha20Poly1305(key).encrypt(nonce, pt, aad)

    def open(self, key: bytes, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        if len(key) != 32 or len(nonce) != 12:
            raise CryptoError("ChaCha20-Poly1305 needs a 32-byte key and a 12-byte nonce")
        if len(ct) < _TAG_LEN:
            raise DecryptError("ciphertext shorter than the tag")
        try:
            return ChaCha20Poly1305(key).decrypt(nonce, ct, aad)
        except InvalidTag:
            raise DecryptError("ChaCha20-Poly1305 authentication failed") from None


AES128GCM: Final[Aead] = _Aes128Gcm()
CHACHA20POLY1305: Final[Aead] = _ChaCha20Poly1305()
