"""Group state as bytes, for the device's encrypted cache (storage/ keeps it in SQLCipher).

The format is versioned and carries secrets: it must only ever be written encrypted.
Version 2 appends the kept past epochs to version 1's fields; version 1 still imports. The
fields fall in two runs, the epoch's (changed by commits only) then the progress within it, so
that a group re-encodes only the second after each message: the bytes are those of one
structure either way.
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
class EpochState(Struct):
    """What only a commit changes: the head of every version, encoded once per epoch."""

    version: Annotated[int, U16]
    cipher_suite: Annotated[int, U16]
    context: GroupContext
    tree: Annotated[bytes, OPAQUE]
    my_leaf: Annotated[int, U32]
    signature_priv: Annotated[bytes, OPAQUE]
    private_keys: Annotated[list[NodeSecret], Vec(NodeSecret)]
    epoch_secrets: Annotated[list[bytes], Vec(OPAQUE)]
    interim_transcript_hash: Annotated[bytes, OPAQUE]


@struct
class ProgressState(Struct):
    """What moves within the epoch (every message ratchets the secret tree); with the epoch
    state before it, the whole of version 1."""

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


def encode(epoch: bytes, progress: ProgressState, past_epochs: PastEpochsState) -> bytes:
    """``epoch`` is the serialised EpochState: the group keeps it from one message to the
    next, since only a commit changes it."""
    return epoch + progress.serialize() + past_epochs.serialize()


def decode(data: bytes) -> tuple[EpochState, ProgressState, PastEpochsState | None]:
    """The state, and its past epochs (``None`` from version 1, which had none)."""
    r = Reader(bytes(data))
    epoch = EpochState.decode_from(r)
    if epoch.version not in (STATE_VERSION, _WITHOUT_PAST_EPOCHS):
        raise UnsupportedError(f"group state version {epoch.version} is not supported")
    progress = ProgressState.decode_from(r)
    past = PastEpochsState.decode_from(r) if epoch.version == STATE_VERSION else None
    r.done()
    return epoch, progress, past
