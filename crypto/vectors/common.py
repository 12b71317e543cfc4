"""Helpers shared by the vector checkers: hex fields and mismatch messages that say where."""

from __future__ import annotations

from typing import Any

from crypto.cipher_suite import CipherSuite, suite
from crypto.primitives import ed25519_public, x25519_public

Case = dict[str, Any]


def unhex(field: str) -> bytes:
    return bytes.fromhex(field)


def case_suite(case: Case) -> CipherSuite:
    return suite(case["cipher_suite"])


def expect(what: str, actual: object, expected: object) -> None:
    """Raise with both values, hex for bytes, so a failure report needs no debugger."""
    if actual != expected:
        raise AssertionError(f"{what}: got {_show(actual)}, expected {_show(expected)}")


def _show(value: object) -> str:
    return value.hex() if isinstance(value, bytes) else repr(value)


# Both implemented suites use DHKEM(X25519) and Ed25519, so a private key's public half is
# one primitive away; a vector's key pair is checked by recomputing it.
def expect_hpke_pair(what: str, priv: bytes, pub: bytes) -> None:
    expect(f"{what}: public key of the private key", x25519_public(priv), pub)


def expect_signature_pair(what: str, priv: bytes, pub: bytes) -> None:
    expect(f"{what}: public key of the private key", ed25519_public(priv), pub)
