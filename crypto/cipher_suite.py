"""MLS cipher suites (RFC 9420 §5.1) and the labelled operations built on them (§5.1.2-§5.2)."""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from functools import lru_cache

from crypto import primitives as p
from crypto.codec import opaque
from crypto.errors import UnsupportedError
from crypto.hpke import Hpke

Random = Callable[[int], bytes]

_MLS = b"MLS 1.0 "


class CipherSuite:
    """One MLS cipher suite: KEM/KDF/AEAD/signature plus MLS's labelled wrappers."""

    def __init__(self, suite_id: int, name: str, aead: p.Aead) -> None:
        self.id = suite_id
        self.name = name
        self.aead = aead
        self.hpke = Hpke(aead)
        self.nh = 32
        self.nk = aead.key_size
        self.nn = aead.nonce_size

    # -- hash and KDF -------------------------------------------------------------------------
    @staticmethod
    def hash(data: bytes) -> bytes:
        return p.sha256(data)

    @staticmethod
    def mac(key: bytes, data: bytes) -> bytes:
        return p.hmac_sha256(key, data)

    @staticmethod
    def verify_mac(key: bytes, data: bytes, tag: bytes) -> bool:
        return hmac.compare_digest(p.hmac_sha256(key, data), tag)

    @staticmethod
    def extract(salt: bytes, ikm: bytes) -> bytes:
        return p.hkdf_extract(salt, ikm)

    @staticmethod
    def expand(prk: bytes, info: bytes, length: int) -> bytes:
        return p.hkdf_expand(prk, info, length)

    def expand_with_label(self, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
        info = length.to_bytes(2, "big") + opaque(_MLS + label) + opaque(context)
        return p.hkdf_expand(secret, info, length)

    def derive_secret(self, secret: bytes, label: bytes) -> bytes:
        return self.expand_with_label(secret, label, b"", self.nh)

    def derive_tree_secret(
        self, secret: bytes, label: bytes, generation: int, length: int
    ) -> bytes:
        return self.expand_with_label(secret, label, generation.to_bytes(4, "big"), length)

    def ref_hash(self, label: bytes, value: bytes) -> bytes:
        return p.sha256(opaque(label) + opaque(value))

    # -- signatures ---------------------------------------------------------------------------
    @staticmethod
    def signature_key_pair(random: Random = os.urandom) -> tuple[bytes, bytes]:
        seed = random(32)
        return seed, p.ed25519_public(seed)

    @staticmethod
    def sign_with_label(priv: bytes, label: bytes, content: bytes) -> bytes:
        return p.ed25519_sign(priv, opaque(_MLS + label) + opaque(content))

    @staticmethod
    def verify_with_label(pub: bytes, label: bytes, content: bytes, signature: bytes) -> bool:
        return p.ed25519_verify(pub, opaque(_MLS + label) + opaque(content), signature)

    # -- public-key encryption ----------------------------------------------------------------
    def derive_key_pair(self, secret: bytes) -> tuple[bytes, bytes]:
        return _derive_key_pair(self.hpke, secret)

    def encrypt_with_label(
        self,
        pub: bytes,
        label: bytes,
        context: bytes,
        plaintext: bytes,
        random: Random = os.urandom,
    ) -> tuple[bytes, bytes]:
        info = opaque(_MLS + label) + opaque(context)
        return self.hpke.seal_base(pub, info, b"", plaintext, random=random)

    def decrypt_with_label(
        self, priv: bytes, label: bytes, context: bytes, kem_output: bytes, ciphertext: bytes
    ) -> bytes:
        info = opaque(_MLS + label) + opaque(context)
        return self.hpke.open_base(kem_output, priv, info, b"", ciphertext)


@lru_cache(maxsize=4096)
def _derive_key_pair(hpke: Hpke, secret: bytes) -> tuple[bytes, bytes]:
    return hpke.derive_key_pair(secret)


SUITES: dict[int, CipherSuite] = {
    0x0001: CipherSuite(0x0001, "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519", p.AES128GCM),
    0x0003: CipherSuite(
        0x0003, "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519", p.CHACHA20POLY1305
    ),
}
DEFAULT_SUITE = 0x0003


def suite(suite_id: int) -> CipherSuite:
    """The cipher suite with this id; Liaison implements 0x0001 and 0x0003."""
    try:
        return SUITES[suite_id]
    except KeyError:
        raise UnsupportedError(f"cipher suite 0x{suite_id:04x} is not supported") from None
