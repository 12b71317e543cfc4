"""Safety numbers: both ends agree, any key change shows, and QR scans compare exactly."""

from __future__ import annotations

import hashlib
import re

import pytest

from crypto.errors import DecodeError, UnsupportedError
from crypto.safety_number import (
    QR_PAYLOAD_SIZE,
    SafetyNumber,
    safety_number,
    verify_scanned,
)

ALICE = "u-alice@chu-lyon.fr"
BOB = "u-bob@chu-lyon.fr"


def key(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


A_KEYS = [key("alice phone"), key("alice desktop")]
B_KEYS = [key("bob phone")]


def reference_fingerprint(user_id: str, keys: list[bytes]) -> bytes:
    """The spec in docs/_formats_draft.md, written out independently of the module."""
    ks = sorted(set(keys))
    blob = b"".join(ks)
    h = b"\x00\x00" + len(ks).to_bytes(2, "big") + blob + user_id.encode()
    for _ in range(5200):
        h = hashlib.sha512(h + blob).digest()
    return h


def test_matches_reference_computation() -> None:
    fa, fb = reference_fingerprint(ALICE, A_KEYS), reference_fingerprint(BOB, B_KEYS)
    assert ALICE < BOB

    def digits(f: bytes) -> str:
        return "".join(
            str(int.from_bytes(f[i : i + 5], "big") % 100000).zfill(5) for i in range(0, 30, 5)
        )

    sn = safety_number(BOB, B_KEYS, ALICE, A_KEYS)
    assert sn.digits == digits(fa) + digits(fb)
    assert sn.qr_payload == b"\x01" + fa[:32] + fb[:32]


def test_symmetric() -> None:
    ab = safety_number(ALICE, A_KEYS, BOB, B_KEYS)
    ba = safety_number(BOB, B_KEYS, ALICE, A_KEYS)
    assert ab == ba
    assert verify_scanned(ab, ba.qr_payload)


def test_sixty_digits_and_display() -> None:
    sn = safety_number(ALICE, A_KEYS, BOB, B_KEYS)
    assert re.fullmatch(r"[0-9]{60}", sn.digits)
    shown = sn.display()
    assert re.fullmatch(r"[0-9]{5}( [0-9]{5}){11}", shown)
    assert shown.replace(" ", "") == sn.digits


def test_changes_when_any_key_or_identity_changes() -> None:
    base = safety_number(ALICE, A_KEYS, BOB, B_KEYS)
    variants = [
        safety_number(ALICE, [A_KEYS[0], key("mallory")], BOB, B_KEYS),  # one device swapped
        safety_number(ALICE, [*A_KEYS, key("extra device")], BOB, B_KEYS),  # device added
        safety_number(ALICE, A_KEYS[:1], BOB, B_KEYS),  # device removed
        safety_number(ALICE, A_KEYS, BOB, [key("bob new phone")]),
        safety_number(ALICE, A_KEYS, "u-carol@chu-lyon.fr", B_KEYS),
    ]
    for v in variants:
        # each user's half is 30 digits: a one-sided change must still move many digits
        assert v.digits != base.digits
        assert v.qr_payload != base.qr_payload
        assert not verify_scanned(base, v.qr_payload)
    assert len({v.digits for v in variants}) == len(variants)


def test_only_the_changed_users_half_moves() -> None:
    base = safety_number(ALICE, A_KEYS, BOB, B_KEYS)
    bob_rekeyed = safety_number(ALICE, A_KEYS, BOB, [key("bob new phone")])
    assert base.digits[:30] == bob_rekeyed.digits[:30]  # Alice sorts first
    assert base.digits[30:] != bob_rekeyed.digits[30:]


def test_device_order_and_duplicates_do_not_matter() -> None:
    base = safety_number(ALICE, A_KEYS, BOB, B_KEYS)
    assert safety_number(ALICE, A_KEYS[::-1], BOB, B_KEYS) == base
    assert safety_number(ALICE, [*A_KEYS, A_KEYS[0]], BOB, B_KEYS) == base


def test_qr_payload_shape_and_verification() -> None:
    local = safety_number(ALICE, A_KEYS, BOB, B_KEYS)
    assert len(local.qr_payload) == QR_PAYLOAD_SIZE == 65
    assert local.qr_payload[0] == 1
    remote_view = safety_number(BOB, B_KEYS, ALICE, A_KEYS)
    assert verify_scanned(local, remote_view.qr_payload) is True
    mitm_view = safety_number(BOB, [key("relay-injected")], ALICE, A_KEYS)
    assert verify_scanned(local, mitm_view.qr_payload) is False


@pytest.mark.parametrize("garbage", [b"", b"\x01", b"hello world", bytes(64), bytes(66)])
def test_garbage_qr_payload_is_a_decode_error(garbage: bytes) -> None:
    local = safety_number(ALICE, A_KEYS, BOB, B_KEYS)
    with pytest.raises(DecodeError):
        verify_scanned(local, garbage)


def test_unknown_qr_version() -> None:
    local = safety_number(ALICE, A_KEYS, BOB, B_KEYS)
    with pytest.raises(UnsupportedError):
        verify_scanned(local, b"\x02" + local.qr_payload[1:])


def test_bad_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        safety_number(ALICE, [], BOB, B_KEYS)
    with pytest.raises(ValueError):
        safety_number(ALICE, A_KEYS, BOB, [b"\x00" * 31])


def test_is_a_frozen_value() -> None:
    sn = safety_number(ALICE, A_KEYS, BOB, B_KEYS)
    assert isinstance(sn, SafetyNumber)
    with pytest.raises(AttributeError):
        sn.digits = "0" * 60  # type: ignore[misc]
