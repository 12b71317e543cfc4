"""Group state as bytes, for the device's encrypted cache (storage/ keeps it in SQLCipher).

The format is versioned and carries secrets: it must only ever be written encrypted.
Version 2 appends the kept past epochs to version 1's fields; version 1 still imports.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from crypto import key_schedule as ks
from crypto.codec import OPAQUE, U8, U16, U32, U64, Reader, Struct, Vec, struct
from crypto.errors import DecodeError, UnsupportedError
from crypto.framing import Sender
from crypto.group_context import GroupContext
from crypto.past_epochs import PastEpochsState
from crypto.proposals import Proposal
from crypto.secret_tree import NodeSecret, SecretTreeState

STATE_VERSION = 2
_WITHOUT_PAST_EPOCHS = 1
_SECRET_FIELDS = tuple(f.name for f in dataclasses.fields(ks.EpochSecrets))


@struct
class Entry(Struct):
    key: Annotated[bytes, OPAQUE]
    value: Annotated[bytes, OPAQUE]


@struct
class EpochPsk(Struct):
    epoch: Annotated[int, U64]
    psk: Annotated[bytes, OPAQUE]


@struct
class StoredProposal(Struct):
    ref: Annotated[bytes, OPAQUE]
    proposal: Proposal
    sender: Sender


@struct
class GroupState(Struct):
    """The current epoch's member state: the whole of version 1, the head of version 2."""

    version: Annotated[int, U16]
    cipher_suite: Annotated[int, U16]
    context: GroupContext
    tree: Annotated[bytes, OPAQUE]
    my_leaf: Annotated[int, U32]
    signature_priv: Annotated[bytes, OPAQUE]
    private_keys: Annotated[list[NodeSecret], Vec(NodeSecret)]
    epoch_secrets: Annotated[list[bytes], Vec(OPAQUE)]
    interim_transcript_hash: Annotated[bytes, OPAQUE]
    secret_tree: SecretTreeState
    external_psks: Annotated[list[Entry], Vec(Entry)]
    resumption_psks: Annotated[list[EpochPsk], Vec(EpochPsk)]
    proposals: Annotated[list[StoredProposal], Vec(StoredProposal)]
    own_update_keys: Annotated[list[Entry], Vec(Entry)]
    active: Annotated[int, U8]


def secrets_to_list(s: ks.EpochSecrets) -> list[bytes]:
    return [getattr(s, name) for name in _SECRET_FIELDS]


def secrets_from_list(values: list[bytes]) -> ks.EpochSecrets:
    if len(values) != len(_SECRET_FIELDS):
        raise DecodeError("group state has the wrong number of epoch secrets")
    return ks.EpochSecrets(*values)


def encode(state: GroupState, past_epochs: PastEpochsState) -> bytes:
    return state.serialize() + past_epochs.serialize()


def decode(data: bytes) -> tuple[GroupState, PastEpochsState | None]:
    """The state, and its past epochs (``None`` from version 1, which had none)."""
    r = Reader(bytes(data))
    state = GroupState.decode_from(r)
    if state.version not in (STATE_VERSION, _WITHOUT_PAST_EPOCHS):
        raise UnsupportedError(f"group state version {state.version} is not supported")
    past = PastEpochsState.decode_from(r) if state.version == STATE_VERSION else None
    r.done()
    return state, past
