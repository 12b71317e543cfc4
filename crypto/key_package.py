"""KeyPackages (RFC 9420 §10): a device's published offer to be added to a group."""

from typing import Annotated

from crypto.cipher_suite import CipherSuite, suite
from crypto.codec import OPAQUE, U16, Struct, Vec, opaque, struct
from crypto.errors import ValidationError
from crypto.extensions import PROTOCOL_VERSION_MLS10, Extension, check_unique
from crypto.leaf_node import KEY_PACKAGE, LeafNode


@struct
class KeyPackage(Struct):
    version: Annotated[int, U16]
    cipher_suite: Annotated[int, U16]
    init_key: Annotated[bytes, OPAQUE]
    leaf_node: LeafNode
    extensions: Annotated[list[Extension], Vec(Extension)]
    signature: Annotated[bytes, OPAQUE]

    def tbs(self) -> bytes:
        wire = self.serialize()
        return wire[: len(wire) - len(opaque(self.signature))]

    def ref(self) -> bytes:
        """KeyPackageRef: how Welcome names the joiner."""
        return suite(self.cipher_suite).ref_hash(b"MLS 1.0 KeyPackage Reference", self.serialize())

    def verify(self, cs: CipherSuite) -> None:
        """Checks a member applies before adding this KeyPackage (RFC 9420 §10.1)."""
        if self.version != PROTOCOL_VERSION_MLS10:
            raise ValidationError("KeyPackage version is not mls10")
        if self.cipher_suite != cs.id:
            raise ValidationError("KeyPackage cipher suite differs from the group's")
        if not cs.verify_with_label(
            self.leaf_node.signature_key, b"KeyPackageTBS", self.tbs(), self.signature
        ):
            raise ValidationError("KeyPackage signature is invalid")
        if self.leaf_node.leaf_node_source != KEY_PACKAGE:
            raise ValidationError("KeyPackage leaf node source is not key_package")
        if not self.leaf_node.verify_signature(cs):
            raise ValidationError("KeyPackage leaf node signature is invalid")
        if self.init_key == self.leaf_node.encryption_key:
            raise ValidationError("KeyPackage init key equals its encryption key")
        check_unique(self.extensions)

