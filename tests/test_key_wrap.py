"""Key wrapping under Argon2id: round trips, wrong passphrases, and hostile blobs."""

from __future__ import annotations

import struct
import unicodedata

import pytest
from nacl.pwhash import argon2id

from crypto.errors import CryptoError, DecodeError, UnsupportedError, ValidationError
from crypto.key_wrap import (
    BLOB_SIZE,
    HEADER_SIZE,
    MAGIC,
    WrongPassphraseError,
    unwrap_key,
    wrap_key,
)

KEY = bytes(range(32))
FAST = {"ops": argon2id.OPSLIMIT_MIN, "mem": argon2id.MEMLIMIT_MIN, "allow_weak": True}


def fast_wrap(passphrase: bytes | str = "correct horse", key: bytes = KEY) -> bytes:
    return wrap_key(key, passphrase, **FAST)


def with_params(blob: bytes, ops: int, mem: int) -> bytes:
    return blob[:5] + struct.pack(">II", ops, mem) + blob[13:]


def test_round_trip_with_fast_parameters() -> None:
    blob = fast_wrap()
    assert len(blob) == BLOB_SIZE == 101
    assert blob.startswith(MAGIC + b"\x01")
    assert struct.unpack(">II", blob[5:13]) == (argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)
    assert KEY not in blob
    assert unwrap_key(blob, "correct horse", allow_weak=True) == KEY


def test_default_parameters_are_moderate_and_work() -> None:
    blob = wrap_key(KEY, b"unlock pin 4821")
    ops, mem = struct.unpack(">II", blob[5:13])
    assert (ops, mem) == (argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)
    assert unwrap_key(blob, b"unlock pin 4821") == KEY


def test_each_wrap_uses_fresh_salt_and_nonce_from_random() -> None:
    assert fast_wrap() != fast_wrap()
    calls: list[int] = []

    def counting_random(n: int) -> bytes:
        calls.append(n)
        return bytes(n)

    a = wrap_key(KEY, "pw", random=counting_random, **FAST)
    b = wrap_key(KEY, "pw", random=counting_random, **FAST)
    assert a == b  # deterministic given the randomness
    assert calls == [16, 24, 16, 24]
    assert a[13:HEADER_SIZE] == bytes(40)


def test_wrong_passphrase() -> None:
    blob = fast_wrap("correct horse")
    for wrong in ("correct horsE", "", b"correct horse\x00", "correct horse "):
        with pytest.raises(WrongPassphraseError):
            unwrap_key(blob, wrong, allow_weak=True)
    assert issubclass(WrongPassphraseError, CryptoError)


def test_unicode_passphrase_and_normalisation() -> None:
    composed = "Pâtissière-🔑-Ωμέγα"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    blob = fast_wrap(composed)
    assert unwrap_key(blob, composed, allow_weak=True) == KEY
    # the same PIN typed on a keyboard that emits combining characters still opens it
    assert unwrap_key(blob, decomposed, allow_weak=True) == KEY
    assert unwrap_key(blob, composed.encode("utf-8"), allow_weak=True) == KEY
    with pytest.raises(WrongPassphraseError):
        unwrap_key(blob, "Patissiere-🔑-Ωμέγα", allow_weak=True)


@pytest.mark.parametrize("pos", [13, 20, 28, 29, 40, 52, 53, 70, 100])
def test_tampered_salt_nonce_or_ciphertext(pos: int) -> None:
    blob = bytearray(fast_wrap())
    blob[pos] ^= 0x01
    with pytest.raises(WrongPassphraseError):
        unwrap_key(bytes(blob), "correct horse", allow_weak=True)


def test_tampered_parameters_within_policy_fail_authentication() -> None:
    blob = wrap_key(KEY, "pw", ops=3, mem=argon2id.MEMLIMIT_MIN, allow_weak=True)
    for ops, mem in ((2, argon2id.MEMLIMIT_MIN), (3, 2 * argon2id.MEMLIMIT_MIN)):
        with pytest.raises(WrongPassphraseError):
            unwrap_key(with_params(blob, ops, mem), "pw", allow_weak=True)


def test_downgraded_blob_is_refused_before_the_kdf() -> None:
    blob = wrap_key(KEY, "pw", ops=argon2id.OPSLIMIT_INTERACTIVE, mem=argon2id.MEMLIMIT_INTERACTIVE)
    assert unwrap_key(blob, "pw") == KEY
    lowered_ops = with_params(blob, argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_INTERACTIVE)
    lowered_mem = with_params(blob, argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_MIN)
    for weak in (lowered_ops, lowered_mem):
        with pytest.raises(ValidationError):
            unwrap_key(weak, "pw")


def test_weak_parameters_need_allow_weak() -> None:
    with pytest.raises(ValidationError):
        wrap_key(KEY, "pw", ops=argon2id.OPSLIMIT_MIN, mem=argon2id.MEMLIMIT_MIN)
    with pytest.raises(ValidationError):
        wrap_key(KEY, "pw", ops=argon2id.OPSLIMIT_INTERACTIVE, mem=argon2id.MEMLIMIT_MIN)
    with pytest.raises(ValidationError):
        unwrap_key(fast_wrap("pw"), "pw")


def test_excessive_parameters_are_refused_even_with_allow_weak() -> None:
    blob = fast_wrap("pw")
    for ops, mem in (
        (argon2id.OPSLIMIT_SENSITIVE + 1, argon2id.MEMLIMIT_MIN),
        (argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_SENSITIVE + 1),
        (0, argon2id.MEMLIMIT_MIN),
        (argon2id.OPSLIMIT_MIN, 0),
    ):
        with pytest.raises(ValidationError):
            unwrap_key(with_params(blob, ops, mem), "pw", allow_weak=True)
        with pytest.raises(ValidationError):
            wrap_key(KEY, "pw", ops=ops, mem=mem, allow_weak=True)


def test_malformed_blobs() -> None:
    blob = fast_wrap("pw")
    for bad in (b"", blob[:4], blob[:HEADER_SIZE], blob[:-1], blob + b"\x00"):
        with pytest.raises(DecodeError):
            unwrap_key(bad, "pw", allow_weak=True)
    with pytest.raises(DecodeError):
        unwrap_key(b"LKW2" + blob[4:], "pw", allow_weak=True)
    with pytest.raises(UnsupportedError):
        unwrap_key(blob[:4] + b"\x02" + blob[5:], "pw", allow_weak=True)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        wrap_key(KEY[:31], "pw", **FAST)
    with pytest.raises(ValueError):
        wrap_key(KEY, "", **FAST)
    with pytest.raises(ValueError):
        wrap_key(KEY, b"", **FAST)
