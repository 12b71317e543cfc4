"""Safety numbers: a fingerprint of two users' identity keys that people compare out of band.

After Signal's numeric fingerprints: each user's fingerprint is 5200 iterations of SHA-512
over their sorted Ed25519 identity keys (one per device) and stable user id, so a relay
that substitutes any device key changes the number both users see. Per user::

    keys = sorted, deduplicated 32-byte keys, concatenated
    h    = version u16 (=0) || number of keys u16 || keys || UTF-8 user id
    repeat 5200 times: h = SHA-512(h || keys)

The 60 digits are each user's first 30 bytes as 6 five-byte big-endian integers mod 100000
(zero-padded to 5 digits), the two users taken in canonical order (by UTF-8 user id, then
fingerprint), so both ends compute the same string. The QR payload is
``version u8 (=1) || fingerprint_a[:32] || fingerprint_b[:32]`` in the same order, so the
scanned code equals the scanner's own payload exactly when the keys match.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from crypto.errors import DecodeError, UnsupportedError

FINGERPRINT_VERSION = 0
QR_VERSION = 1
ITERATIONS = 5200
KEY_SIZE = 32
_QR_FINGERPRINT_SIZE = 32
QR_PAYLOAD_SIZE = 1 + 2 * _QR_FINGERPRINT_SIZE
_DISPLAYED_BYTES = 30
_GROUP = 5


@dataclass(frozen=True)
class SafetyNumber:
    """The same value on both users' screens when, and only when, they see the same keys."""

    digits: str
    qr_payload: bytes

    def display(self) -> str:
        """12 groups of 5 digits, the form people read aloud."""
        return " ".join(self.digits[i : i + _GROUP] for i in range(0, len(self.digits), _GROUP))


def _fingerprint(user_id: str, keys: Sequence[bytes]) -> bytes:
    unique = sorted(set(keys))
    if not unique:
        raise ValueError("a user needs at least one identity key")
    if any(len(k) != KEY_SIZE for k in unique):
        raise ValueError(f"identity keys must be {KEY_SIZE} bytes")
    key_bytes = b"".join(unique)
    h = (
        FINGERPRINT_VERSION.to_bytes(2, "big")
        + len(unique).to_bytes(2, "big")
        + key_bytes
        + user_id.encode("utf-8")
    )
    for _ in range(ITERATIONS):
        h = hashlib.sha512(h + key_bytes).digest()
    return h


def _digits(fingerprint: bytes) -> str:
    """Five bytes per group: 40 bits mod 100000 is close enough to uniform (bias < 1e-7)."""
    return "".join(
        f"{int.from_bytes(fingerprint[i : i + 5], 'big') % 100000:05d}"
        for i in range(0, _DISPLAYED_BYTES, 5)
    )


def safety_number(
    local_user_id: str,
    local_keys: Sequence[bytes],
    remote_user_id: str,
    remote_keys: Sequence[bytes],
) -> SafetyNumber:
    """Compute the safety number of a conversation between two users (same for both)."""
    first, second = sorted(
        [
            (local_user_id.encode("utf-8"), _fingerprint(local_user_id, local_keys)),
            (remote_user_id.encode("utf-8"), _fingerprint(remote_user_id, remote_keys)),
        ]
    )
    return SafetyNumber(
        digits=_digits(first[1]) + _digits(second[1]),
        qr_payload=bytes((QR_VERSION,))
        + first[1][:_QR_FINGERPRINT_SIZE]
        + second[1][:_QR_FINGERPRINT_SIZE],
    )


def verify_scanned(local: SafetyNumber, scanned: bytes) -> bool:
    """True if a QR payload scanned from the other device matches ours (constant time)."""
    if len(scanned) != QR_PAYLOAD_SIZE:
        raise DecodeError("not a safety-number QR payload")
    if scanned[0] != QR_VERSION:
        raise UnsupportedError(f"safety-number QR version {scanned[0]}")
    return hmac.compare_digest(scanned, local.qr_payload)
