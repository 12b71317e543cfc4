"""HPKE (RFC 9180) base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM or ChaCha20.

MLS seals every path secret and Welcome with single-shot HPKE, so the single-shot calls
skip the context objects and the exporter secret, and every constant label (suite_id,
``"HPKE-v1"`` prefixes, length headers, the default ``psk_id_hash``) is built once.
Only base mode is implemented: MLS never uses the PSK or Auth modes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from crypto.errors import CryptoError
from crypto.primitives import Aead, hkdf_expand, hkdf_extract, x25519, x25519_public

Random = Callable[[int], bytes]

_KEM_ID: Final = 0x0020  # DHKEM(X25519, HKDF-SHA256)
_KDF_ID: Final = 0x0001  # HKDF-SHA256
_MODE_BASE: Final = b"\x00"
_NH: Final = 32  # HKDF-SHA256 output size, also Nsecret, Nsk and Npk for X25519

# LabeledExtract/LabeledExpand inputs inside the KEM (suite_id = "KEM" || kem_id).
_KEM_LABEL: Final = b"HPKE-v1KEM" + _KEM_ID.to_bytes(2, "big")
_DKP_PRK: Final = _KEM_LABEL + b"dkp_prk"
_SK_INFO: Final = _NH.to_bytes(2, "big") + _KEM_LABEL + b"sk"
_EAE_PRK: Final = _KEM_LABEL + b"eae_prk"
_SHARED_SECRET_INFO: Final = _NH.to_bytes(2, "big") + _KEM_LABEL + b"shared_secret"


def _derive_key_pair(ikm: bytes) -> tuple[bytes, bytes]:
    """DeriveKeyPair for X25519 (RFC 9180 §7.1.3)."""
    dkp_prk = hkdf_extract(b"", _DKP_PRK + ikm)
    sk = hkdf_expand(dkp_prk, _SK_INFO, _NH)
    return sk, x25519_public(sk)


def _extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    """DHKEM ExtractAndExpand (RFC 9180 §4.1)."""
    eae_prk = hkdf_extract(b"", _EAE_PRK + dh)
    return hkdf_expand(eae_prk, _SHARED_SECRET_INFO + kem_context, _NH)


class _Context:
    """State shared by both roles: AEAD key, nonce base, sequence number, exporter secret."""

    __slots__ = ("_aead", "_exporter", "_key", "_nonce_base", "_nonce_size", "_sec", "_seq")

    def __init__(self, hpke: Hpke, secret: bytes, ksc: bytes) -> None:
        aead = hpke.aead
        self._aead = aead
        self._key = hkdf_expand(secret, hpke._key_info + ksc, aead.key_size)
        base_nonce = hkdf_expand(secret, hpke._nonce_info + ksc, aead.nonce_size)
        self._nonce_base = int.from_bytes(base_nonce, "big")
        self._nonce_size = aead.nonce_size
        self._seq = 0
        self._exporter = hkdf_expand(secret, hpke._exp_info + ksc, _NH)
        self._sec = hpke._sec_label

    def _next_nonce(self) -> bytes:
        """ComputeNonce for the current seq; refuses the last value as IncrementSeq would."""
        if self._seq >= (1 << (8 * self._nonce_size)) - 1:
            raise CryptoError("HPKE message limit reached (sequence number exhausted)")
        return (self._nonce_base ^ self._seq).to_bytes(self._nonce_size, "big")

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """Secret export (RFC 9180 §5.3): a ``length``-byte secret bound to this context."""
        if not 0 <= length <= 255 * _NH:
            raise ValueError("HPKE export length out of range")
        return hkdf_expand(
            self._exporter, length.to_bytes(2, "big") + self._sec + exporter_context, length
        )


class SenderContext(_Context):
    """ContextS: encrypts a sequence of messages to one recipient."""

    __slots__ = ()

    def seal(self, aad: bytes, pt: bytes) -> bytes:
        """Encrypt the next message; the recipient must open messages in the same order."""
        ct = self._aead.seal(self._key, self._next_nonce(), aad, pt)
        self._seq += 1
        return ct


class RecipientContext(_Context):
    """ContextR: decrypts the sender's messages in order."""

    __slots__ = ()

    def open(self, aad: bytes, ct: bytes) -> bytes:
        """Decrypt the next message; on DecryptError the sequence number does not advance."""
        pt = self._aead.open(self._key, self._next_nonce(), aad, ct)
        self._seq += 1
        return pt


class Hpke:
    """One HPKE cipher suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and ``aead``."""

    __slots__ = (
        "_exp_info",
        "_info_hash_label",
        "_key_info",
        "_nonce_info",
        "_psk_id_hash",
        "_sec_label",
        "_secret_label",
        "aead",
        "suite_id",
    )

    def __init__(self, aead: Aead) -> None:
        self.aead = aead
        self.suite_id = (
            b"HPKE"
            + _KEM_ID.to_bytes(2, "big")
            + _KDF_ID.to_bytes(2, "big")
            + aead.id.to_bytes(2, "big")
        )
        label = b"HPKE-v1" + self.suite_id
        self._info_hash_label = label + b"info_hash"
        self._secret_label = label + b"secret"  # followed by psk, empty in base mode
        self._psk_id_hash = hkdf_extract(b"", label + b"psk_id_hash")  # default psk_id ""
        self._key_info = aead.key_size.to_bytes(2, "big") + label + b"key"
        self._nonce_info = aead.nonce_size.to_bytes(2, "big") + label + b"base_nonce"
        self._exp_info = _NH.to_bytes(2, "big") + label + b"exp"
        self._sec_label = label + b"sec"

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """Deterministic (sk, pk) from input keying material, as MLS derives node keys."""
        return _derive_key_pair(ikm)

    def generate_key_pair(self, random: Random = os.urandom) -> tuple[bytes, bytes]:
        """Fresh (sk, pk); any 32 random bytes are a valid X25519 private key."""
        sk = random(_NH)
        return sk, x25519_public(sk)

    def _encap(self, pk_r: bytes, ikm_e: bytes | None, random: Random) -> tuple[bytes, bytes]:
        """Encap: (shared_secret, enc); ``ikm_e`` fixes the ephemeral key for test vectors."""
        if ikm_e is None:
            sk_e, enc = self.generate_key_pair(random)
        else:
            sk_e, enc = _derive_key_pair(ikm_e)
        return _extract_and_expand(x25519(sk_e, pk_r), enc + pk_r), enc

    def _schedule(self, shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
        """Base-mode key schedule up to (secret, key_schedule_context)."""
        ksc = _MODE_BASE + self._psk_id_hash + hkdf_extract(b"", self._info_hash_label + info)
        return hkdf_extract(shared_secret, self._secret_label), ksc

    @staticmethod
    def _decap(enc: bytes, sk_r: bytes, pk_r: bytes | None) -> bytes:
        """Decap; a caller that already holds ``pk_r`` saves a scalar multiplication."""
        dh = x25519(sk_r, enc)
        return _extract_and_expand(dh, enc + (x25519_public(sk_r) if pk_r is None else pk_r))

    def setup_base_s(
        self,
        pk_r: bytes,
        info: bytes,
        *,
        ikm_e: bytes | None = None,
        random: Random = os.urandom,
    ) -> tuple[bytes, SenderContext]:
        """SetupBaseS: (enc, sender context); raises CryptoError for a low-order ``pk_r``."""
        shared_secret, enc = self._encap(pk_r, ikm_e, random)
        return enc, SenderContext(self, *self._schedule(shared_secret, info))

    def setup_base_r(
        self, enc: bytes, sk_r: bytes, info: bytes, *, pk_r: bytes | None = None
    ) -> RecipientContext:
        """SetupBaseR; ``pk_r`` must match ``sk_r`` if given (it skips recomputing it)."""
        return RecipientContext(self, *self._schedule(self._decap(enc, sk_r, pk_r), info))

    def seal_base(
        self,
        pk_r: bytes,
        info: bytes,
        aad: bytes,
        pt: bytes,
        *,
        random: Random = os.urandom,
        ikm_e: bytes | None = None,
    ) -> tuple[bytes, bytes]:
        """Single-shot SealBase: (enc, ct) without building a context or exporter secret."""
        shared_secret, enc = self._encap(pk_r, ikm_e, random)
        secret, ksc = self._schedule(shared_secret, info)
        aead = self.aead
        key = hkdf_expand(secret, self._key_info + ksc, aead.key_size)
        nonce = hkdf_expand(secret, self._nonce_info + ksc, aead.nonce_size)  # seq 0
        return enc, aead.seal(key, nonce, aad, pt)

    def open_base(
        self,
        enc: bytes,
        sk_r: bytes,
        info: bytes,
        aad: bytes,
        ct: bytes,
        *,
        pk_r: bytes | None = None,
    ) -> bytes:
        """Single-shot OpenBase; DecryptError if ``ct``/``aad`` was altered or the key is wrong.

        A low-order ``enc`` raises CryptoError (DecryptError's parent).
        """
        secret, ksc = self._schedule(self._decap(enc, sk_r, pk_r), info)
        aead = self.aead
        key = hkdf_expand(secret, self._key_info + ksc, aead.key_size)
        nonce = hkdf_expand(secret, self._nonce_info + ksc, aead.nonce_size)
        return aead.open(key, nonce, aad, ct)
