"""GroupInfo and Welcome (RFC 9420 §12.4.3): how a new member learns the group it joins."""

from __future__ import annotations

from typing import Annotated

from crypto import key_schedule as ks
from crypto.cipher_suite import CipherSuite
from crypto.codec import OPAQUE, U16, U32, Opt, Struct, Vec, struct
from crypto.errors import DecryptError, ValidationError
from crypto.extensions import Extension
from crypto.group_context import GroupContext
from crypto.psk import PreSharedKeyID
from crypto.treekem import HPKECiphertext, PathSecret


@struct
class GroupInfo(Struct):
    group_context: GroupContext
    extensions: Annotated[list[Extension], Vec(Extension)]
    confirmation_tag: Annotated[bytes, OPAQUE]
    signer: Annotated[int, U32]
    signature: Annotated[bytes, OPAQUE]

    def tbs(self) -> bytes:
        w = bytearray()
        self.group_context.encode_into(w)
        Vec(Extension).encode(w, self.extensions)
        OPAQUE.encode(w, self.confirmation_tag)
        U32.encode(w, self.signer)
        return bytes(w)

    def verify(self, cs: CipherSuite, signer_key: bytes) -> None:
        if not cs.verify_with_label(signer_key, b"GroupInfoTBS", self.tbs(), self.signature):
            raise ValidationError("GroupInfo signature is invalid")


@struct
class GroupSecrets(Struct):
    joiner_secret: Annotated[bytes, OPAQUE]
    path_secret: Annotated[PathSecret | None, Opt(PathSecret)]
    psks: Annotated[list[PreSharedKeyID], Vec(PreSharedKeyID)]


@struct
class EncryptedGroupSecrets(Struct):
    new_member: Annotated[bytes, OPAQUE]
    encrypted_group_secrets: HPKECiphertext


@struct
class Welcome(Struct):
    cipher_suite: Annotated[int, U16]
    secrets: Annotated[list[EncryptedGroupSecrets], Vec(EncryptedGroupSecrets)]
    encrypted_group_info: Annotated[bytes, OPAQUE]


def open_group_secrets(cs: CipherSuite, welcome: Welcome, key_package_ref: bytes,
                       init_priv: bytes) -> GroupSecrets:
    """The joiner's GroupSecrets, found by its KeyPackageRef and opened with its init key."""
    mine = next((s for s in welcome.secrets if s.new_member == key_package_ref), None)
    if mine is None:
        raise ValidationError("Welcome is not addressed to this KeyPackage")
    ct = mine.encrypted_group_secrets
    return GroupSecrets.deserialize(cs.decrypt_with_label(
        init_priv, b"Welcome", welcome.encrypted_group_info, ct.kem_output, ct.ciphertext))


def open_group_info(cs: CipherSuite, welcome: Welcome, joiner_secret: bytes,
                    psk_secret: bytes) -> GroupInfo:
    key, nonce = ks.welcome_key_nonce(cs, ks.welcome_secret(cs, joiner_secret, psk_secret))
    try:
        return GroupInfo.deserialize(cs.aead.open(key, nonce, b"", welcome.encrypted_group_info))
    except DecryptError:
        raise DecryptError("cannot decrypt the Welcome's GroupInfo") from None
