"""Credentials (RFC 9420 §5.3) and Liaison's organisation attestation.

The hospital is MLS's Authentication Service: a device credential binds a user id, a
device id and the device's signature key, and is valid only when the organisation's
Ed25519 key has signed that binding. Clients refuse leaves whose attestation fails, so a
relay cannot slip an unknown device into a room.
"""

import functools
from collections.abc import Callable
from typing import Annotated

from crypto import primitives as p
from crypto.codec import OPAQUE, U16, Reader, Struct, Vec, opaque, struct
from crypto.errors import CredentialError, DecodeError

BASIC = 0x0001
X509 = 0x0002
LIAISON = 0xF0A1  # private-use range (RFC 9420 §17.5)

_ATTESTATION_LABEL = b"Liaison 1.0 DeviceAttestation"


@struct
class Certificate(Struct):
    cert_data: Annotated[bytes, OPAQUE]


@struct
class Credential(Struct):
    """``basic`` and Liaison credentials carry one opaque identity, x509 a chain."""

    credential_type: int
    identity: bytes = b""
    certificates: tuple[Certificate, ...] = ()

    def _encode(self, w: bytearray) -> None:
        U16.encode(w, self.credential_type)
        if self.credential_type == X509:
            Vec(Certificate).encode(w, list(self.certificates))
        else:
            OPAQUE.encode(w, self.identity)

    @classmethod
    def _decode(cls, r: Reader) -> "Credential":
        t = r.u16()
        if t == X509:
            return cls(t, certificates=tuple(Vec(Certificate).decode(r)))
        if t in (BASIC, LIAISON):
            return cls(t, identity=r.opaque())
        raise DecodeError(f"unknown credential type 0x{t:04x}")


@struct
class LiaisonIdentity(Struct):
    """What a Liaison credential says: who, which device, and the organisation's word for it."""

    user_id: Annotated[bytes, OPAQUE]
    device_id: Annotated[bytes, OPAQUE]
    attestation: Annotated[bytes, OPAQUE]

    def to_credential(self) -> Credential:
        return Credential(LIAISON, identity=self.serialize())


def _attestation_tbs(user_id: bytes, device_id: bytes, signature_key: bytes) -> bytes:
    return opaque(_ATTESTATION_LABEL) + opaque(user_id) + opaque(device_id) + opaque(signature_key)


def attest(
    org_signing_seed: bytes, user_id: bytes, device_id: bytes, signature_key: bytes
) -> Credential:
    """The organisation signs (user, device, signature key): done by the relay's admin key."""
    sig = p.ed25519_sign(org_signing_seed, _attestation_tbs(user_id, device_id, signature_key))
    return LiaisonIdentity(user_id, device_id, sig).to_credential()


@functools.lru_cache(maxsize=4096)  # read for every message received: parsed once per member
def liaison_identity(credential: Credential) -> LiaisonIdentity:
    if credential.credential_type != LIAISON:
        raise CredentialError("not a Liaison credential")
    try:
        return LiaisonIdentity.deserialize(credential.identity)
    except DecodeError as e:
        raise CredentialError(f"malformed Liaison credential: {e}") from None


# A credential validator: raises CredentialError when (credential, signature key) is not
# acceptable. The group calls it for every leaf it adds, every commit and every Welcome.
CredentialValidator = Callable[[Credential, bytes], None]


def organisation_validator(org_public_key: bytes) -> CredentialValidator:
    """Accept only Liaison credentials attested by this organisation key."""

    def validate(credential: Credential, signature_key: bytes) -> None:
        ident = liaison_identity(credential)
        tbs = _attestation_tbs(ident.user_id, ident.device_id, signature_key)
        if not p.ed25519_verify(org_public_key, tbs, ident.attestation):
            raise CredentialError(
                "device credential is not attested by the organisation "
                f"(user {ident.user_id.decode(errors='replace')!r})"
            )

    return validate


def accept_any(credential: Credential, signature_key: bytes) -> None:
    """For interoperability vectors only: every credential is taken at its word."""
