"""Proposals (RFC 9420 §12.1) and their by-value/by-reference wrapper."""

from typing import Annotated

from crypto.codec import OPAQUE, U8, U16, U32, Reader, Struct, Vec, struct
from crypto.errors import DecodeError
from crypto.extensions import Extension
from crypto.key_package import KeyPackage
from crypto.leaf_node import LeafNode
from crypto.psk import PreSharedKeyID

ADD = 1
UPDATE = 2
REMOVE = 3
PSK = 4
REINIT = 5
EXTERNAL_INIT = 6
GROUP_CONTEXT_EXTENSIONS = 7
DEFAULT_PROPOSALS = frozenset(range(1, 8))


@struct
class Add(Struct):
    key_package: KeyPackage


@struct
class Update(Struct):
    leaf_node: LeafNode


@struct
class Remove(Struct):
    removed: Annotated[int, U32]


@struct
class PreSharedKey(Struct):
    psk: PreSharedKeyID


@struct
class ReInit(Struct):
    group_id: Annotated[bytes, OPAQUE]
    version: Annotated[int, U16]
    cipher_suite: Annotated[int, U16]
    extensions: Annotated[list[Extension], Vec(Extension)]


@struct
class ExternalInit(Struct):
    kem_output: Annotated[bytes, OPAQUE]


@struct
class GroupContextExtensions(Struct):
    extensions: Annotated[list[Extension], Vec(Extension)]


_BODIES: dict[int, type[Struct]] = {
    ADD: Add,
    UPDATE: Update,
    REMOVE: Remove,
    PSK: PreSharedKey,
    REINIT: ReInit,
    EXTERNAL_INIT: ExternalInit,
    GROUP_CONTEXT_EXTENSIONS: GroupContextExtensions,
}
_TYPES = {v: k for k, v in _BODIES.items()}


@struct
class Proposal(Struct):
    proposal_type: int
    body: Struct

    @classmethod
    def of(cls, body: Struct) -> "Proposal":
        return cls(_TYPES[type(body)], body)

    def _encode(self, w: bytearray) -> None:
        U16.encode(w, self.proposal_type)
        self.body.encode_into(w)

    @classmethod
    def _decode(cls, r: Reader) -> "Proposal":
        t = r.u16()
        body = _BODIES.get(t)
        if body is None:
            raise DecodeError(f"unknown proposal type {t}")
        return cls(t, body.decode_from(r))


PROPOSAL = 1
REFERENCE = 2


@struct
class ProposalOrRef(Struct):
    """A commit names proposals by value or by their ProposalRef."""

    proposal: Proposal | None
    reference: bytes | None

    def _encode(self, w: bytearray) -> None:
        if self.proposal is not None:
            U8.encode(w, PROPOSAL)
            self.proposal.encode_into(w)
        else:
            assert self.reference is not None
            U8.encode(w, REFERENCE)
            OPAQUE.encode(w, self.reference)

    @classmethod
    def _decode(cls, r: Reader) -> "ProposalOrRef":
        t = r.u8()
        if t == PROPOSAL:
            return cls(Proposal.decode_from(r), None)
        if t == REFERENCE:
            return cls(None, r.opaque())
        raise DecodeError(f"invalid ProposalOrRef type {t}")
