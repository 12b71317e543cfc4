"""What a device signs to enroll and to log in: part of the contract, used by both sides."""

from __future__ import annotations

ENROLL_LABEL = b"Liaison 1.0 Enroll"
LOGIN_LABEL = b"Liaison 1.0 Login"
LINK_LABEL = b"Liaison 1.0 Link"
HISTORY_LABEL = b"Liaison 1.0 History"


def enroll_proof_message(invite_code: str, signature_key: bytes) -> bytes:
    """Proves the enrolling device holds the private half of ``signature_key``."""
    return ENROLL_LABEL + b"\x00" + invite_code.encode() + b"\x00" + signature_key


def login_message(challenge: bytes, device_id: str) -> bytes:
    return LOGIN_LABEL + b"\x00" + challenge + b"\x00" + device_id.encode()


def link_proof_message(signature_key: bytes, box_key: bytes) -> bytes:
    """Proves a device being linked holds ``signature_key`` and binds its X25519 ``box_key``
    to it, so the approving device seals the history to the key of the device it adds."""
    return LINK_LABEL + b"\x00" + signature_key + b"\x00" + box_key


def history_message(device_id: str, ciphertext_sha256: bytes) -> bytes:
    """What the approving device signs inside the sealed archive key: the new device then
    knows its history comes from one of its user's devices, not from whoever can seal."""
    return HISTORY_LABEL + b"\x00" + device_id.encode() + b"\x00" + ciphertext_sha256
