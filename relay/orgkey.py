"""The organisation's Ed25519 signing key: the Authentication Service's root of trust.

At rest it is only ever wrapped under the administrators' passphrase (Argon2id); it is
unwrapped in memory when ``serve`` starts.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from crypto.credential import Credential, attest
from crypto.key_wrap import unwrap_key, wrap_key
from crypto.primitives import ed25519_public, hkdf_expand, hkdf_extract


@dataclass(frozen=True)
class OrganisationKey:
    seed: bytes

    def __repr__(self) -> str:  # never print the seed
        return f"OrganisationKey({self.fingerprint})"

    @property
    def public_key(self) -> bytes:
        return ed25519_public(self.seed)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def attest(self, user_id: str, device_id: str, signature_key: bytes) -> Credential:
        return attest(self.seed, user_id.encode(), device_id.encode(), signature_key)

    def derived_key(self, purpose: bytes) -> bytes:
        """A 32-byte key for sealing relay-side secrets (e.g. TOTP seeds) at rest."""
        return hkdf_expand(hkdf_extract(b"liaison-relay", self.seed), purpose, 32)


def fingerprint(public_key: bytes) -> str:
    """SHA-256 of the public key, as 16 groups of 4 hex digits: what admins compare."""
    h = hashlib.sha256(public_key).hexdigest()
    return " ".join(h[i : i + 4] for i in range(0, len(h), 4))


def create(path: Path, passphrase: bytes, *, kdf_ops: int | None = None,
           kdf_mem: int | None = None) -> OrganisationKey:
    key = OrganisationKey(os.urandom(32))
    kwargs = {}
    if kdf_ops is not None and kdf_mem is not None:
        kwargs = {"ops": kdf_ops, "mem": kdf_mem}
    blob = wrap_key(key.seed, passphrase, **kwargs)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    return key


def load(path: Path, passphrase: bytes) -> OrganisationKey:
    return OrganisationKey(unwrap_key(path.read_bytes(), passphrase))
