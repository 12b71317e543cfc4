"""Leaf nodes (RFC 9420 §7.2): a member's keys, credential and capabilities, self-signed."""

import dataclasses
from typing import Annotated

from crypto.cipher_suite import CipherSuite
from crypto.codec import OPAQUE, U8, U32, U64, Reader, Struct, Vec, opaque, struct
from crypto.credential import Credential
from crypto.errors import DecodeError
from crypto.extensions import Capabilities, Extension

_EXTS = Vec(Extension)

KEY_PACKAGE = 1
UPDATE = 2
COMMIT = 3


@struct
class Lifetime(Struct):
    not_before: Annotated[int, U64]
    not_after: Annotated[int, U64]


@struct
class LeafNode(Struct):
    encryption_key: bytes
    signature_key: bytes
    credential: Credential
    capabilities: Capabilities
    leaf_node_source: int
    lifetime: Lifetime | None
    parent_hash: bytes
    extensions: list[Extension]
    signature: bytes

    def _encode_tbs_fields(self, w: bytearray) -> None:
        OPAQUE.encode(w, self.encryption_key)
        OPAQUE.encode(w, self.signature_key)
        self.credential.encode_into(w)
        self.capabilities.encode_into(w)
        U8.encode(w, self.leaf_node_source)
        if self.leaf_node_source == KEY_PACKAGE:
            assert self.lifetime is not None
            self.lifetime.encode_into(w)
        elif self.leaf_node_source == COMMIT:
            OPAQUE.encode(w, self.parent_hash)
        _EXTS.encode(w, self.extensions)

    def _encode(self, w: bytearray) -> None:
        self._encode_tbs_fields(w)
        OPAQUE.encode(w, self.signature)

    @classmethod
    def _decode(cls, r: Reader) -> "LeafNode":
        enc = r.opaque()
        sig_key = r.opaque()
        cred = Credential.decode_from(r)
        caps = Capabilities.decode_from(r)
        source = r.u8()
        lifetime, parent_hash = None, b""
        if source == KEY_PACKAGE:
            lifetime = Lifetime.decode_from(r)
        elif source == COMMIT:
            parent_hash = r.opaque()
        elif source != UPDATE:
            raise DecodeError(f"invalid leaf node source {source}")
        exts = _EXTS.decode(r)
        return cls(enc, sig_key, cred, caps, source, lifetime, parent_hash, exts, r.opaque())

    def tbs(self, group_id: bytes = b"", leaf_index: int = 0) -> bytes:
        """LeafNodeTBS: the group and position are bound in for update and commit leaves."""
        w = bytearray()
        self._encode_tbs_fields(w)
        if self.leaf_node_source in (UPDATE, COMMIT):
            w += opaque(group_id)
            U32.encode(w, leaf_index)
        return bytes(w)

    def verify_signature(self, cs: CipherSuite, group_id: bytes = b"", leaf_index: int = 0) -> bool:
        return cs.verify_with_label(
            self.signature_key, b"LeafNodeTBS", self.tbs(group_id, leaf_index), self.signature
        )

    def signed(self, cs: CipherSuite, sig_priv: bytes, group_id: bytes = b"",
               leaf_index: int = 0) -> "LeafNode":
        sig = cs.sign_with_label(sig_priv, b"LeafNodeTBS", self.tbs(group_id, leaf_index))
        return dataclasses.replace(self, signature=sig)
