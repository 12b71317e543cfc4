"""What a device signs to enroll and to log in: part of the contract, used by both sides."""

from __future__ import annotations

ENROLL_LABEL = b"Liaison 1.0 Enroll"
LOGIN_LABEL = b"Liaison 1.0 Login"


def enroll_proof_message(invite_code: str, signature_key: bytes) -> bytes:
    """Proves the enrolling device holds the private half of ``signature_key``."""
    return ENROLL_LABEL + b"\x00" + invite_code.encode() + b"\x00" + signature_key


def login_message(challenge: bytes, device_id: str) -> bytes:
    return LOGIN_LABEL + b"\x00" + challenge + b"\x00" + device_id.encode()
