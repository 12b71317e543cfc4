"""Helpers shared by the vector checkers: hex fields and mismatch messages that say where."""

from __future__ import annotations

from typing import Any

from crypto.cipher_suite import CipherSuite, suite

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
