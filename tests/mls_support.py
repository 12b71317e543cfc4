"""Synthetic organisation and devices for MLS tests: attested credentials, key packages."""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass

from crypto.cipher_suite import CipherSuite, suite
from crypto.credential import attest, organisation_validator
from crypto.group import Group, KeyPackageSecrets, create_key_package
from crypto.key_package import KeyPackage
from crypto.primitives import ed25519_public


def seeded_random(seed: int) -> Callable[[int], bytes]:
    """Deterministic randomness, injected so that failing runs replay exactly."""
    rng = _random.Random(seed)
    return lambda n: rng.randbytes(n)


@dataclass
class Org:
    """A hospital's Authentication Service: its signing key attests devices."""

    seed: bytes

    @property
    def public_key(self) -> bytes:
        return ed25519_public(self.seed)

    def validator(self):
        return organisation_validator(self.public_key)

    def device(self, user: str, device: str, cs: CipherSuite, rnd: Callable[[int], bytes],
               ) -> Device:
        sig_priv = rnd(32)
        cred = attest(self.seed, user.encode(), device.encode(), ed25519_public(sig_priv))
        return Device(user, cs, cred, sig_priv, rnd, self)


@dataclass
class Device:
    user: str
    cs: CipherSuite
    credential: object
    signature_priv: bytes
    random: Callable[[int], bytes]
    org: Org

    def key_package(self) -> tuple[KeyPackage, KeyPackageSecrets]:
        return create_key_package(self.cs, self.credential, self.signature_priv,  # type: ignore[arg-type]
                                  random=self.random)

    def create_group(self, group_id: bytes = b"room-1") -> Group:
        return Group.create(self.cs, group_id, self.credential, self.signature_priv,  # type: ignore[arg-type]
                            self.org.validator(), random=self.random)


def make_org(seed: int = 1) -> Org:
    return Org(seeded_random(seed)(32))


def default_suite() -> CipherSuite:
    return suite(0x0003)
