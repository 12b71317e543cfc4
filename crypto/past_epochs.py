"""Application keys of the last few epochs, for late messages (RFC 9420 §12.4.2, "might keep
the secret tree for a short time to decrypt late messages in the previous epoch").

A message encrypted just before a commit reaches everyone just after it: the relay orders the
commit first, every member moves to the next epoch, and the message would be undecryptable.
So a member keeps, for the last ``keep`` epochs, what opening and verifying an *application*
message needs: the epoch's secret tree (whose consumed generations stay consumed), its
sender data secret, its GroupContext and its members' signature keys. Handshake messages of
a past epoch stay refused: they could only change a state that is gone.

Forward secrecy is bounded, not lost: a kept tree deletes each key as it is used, and a whole
epoch is deleted once ``keep`` newer ones exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Protocol

from crypto import framing as fr
from crypto.cipher_suite import CipherSuite
from crypto.codec import OPAQUE, U16, U32, U64, Struct, Vec, struct
from crypto.credential import Credential
from crypto.errors import StaleEpochError, ValidationError
from crypto.secret_tree import SecretTree, SecretTreeState

DEFAULT_KEPT = 3


class _Signing(Protocol):
    """What verifying a sender needs: a LeafNode, or a Signer restored from a saved state."""

    @property
    def signature_key(self) -> bytes: ...

    @property
    def credential(self) -> Credential: ...


@struct
class Signer(Struct):
    leaf: Annotated[int, U32]
    signature_key: Annotated[bytes, OPAQUE]
    credential: Credential


@struct
class PastEpochState(Struct):
    epoch: Annotated[int, U64]
    group_context: Annotated[bytes, OPAQUE]
    sender_data_secret: Annotated[bytes, OPAQUE]
    secret_tree: SecretTreeState
    changed: Annotated[list[Signer], Vec(Signer)]  # signers differing from the newer epoch's
    absent: Annotated[list[int], Vec(U32)]  # leaves the newer epoch has and this one had not


@struct
class PastEpochsState(Struct):
    """The kept epochs inside an exported group state (version 2 onwards), newest first.

    Members rarely change between epochs, so each epoch's signers are written as a difference
    from the next newer epoch's (the newest's from the current members): a 1,024-member room
    does not write 1,024 credentials per kept epoch on every save.
    """

    keep: Annotated[int, U16]
    epochs: Annotated[list[PastEpochState], Vec(PastEpochState)]


@dataclass
class PastEpoch:
    """One left epoch, as far as its application messages are concerned."""

    epoch: int
    group_context: bytes
    sender_data_secret: bytes
    secret_tree: SecretTree
    signers: dict[int, _Signing]

    def open(self, cs: CipherSuite, msg: fr.PrivateMessage
             ) -> tuple[fr.FramedContent, Credential]:
        """Decrypt and verify an application message, then consume its generation: a message
        failing any check consumes nothing, a good one cannot be opened twice."""
        if msg.content_type != fr.APPLICATION_CONTENT:
            raise StaleEpochError(f"a handshake message of past epoch {self.epoch} is refused")
        ac, use = fr.unprotect_private(cs, msg, self.secret_tree, self.sender_data_secret)
        signer = self.signers.get(ac.content.sender.index)
        if signer is None:
            raise ValidationError(f"sender leaf {ac.content.sender.index} was not a member "
                                  f"in epoch {self.epoch}")
        fr.verify(cs, signer.signature_key, ac, self.group_context)
        self.secret_tree.consume(use)
        return ac.content, signer.credential

    def to_state(self, newer: Mapping[int, _Signing]) -> PastEpochState:
        return PastEpochState(
            self.epoch, self.group_context, self.sender_data_secret, self.secret_tree.to_state(),
            [Signer(i, s.signature_key, s.credential) for i, s in sorted(self.signers.items())
             if not _same(newer.get(i), s)],
            sorted(set(newer) - set(self.signers)))

    @classmethod
    def from_state(cls, cs: CipherSuite, state: PastEpochState, newer: Mapping[int, _Signing]
                   ) -> PastEpoch:
        absent = set(state.absent)
        signers = {i: s for i, s in newer.items() if i not in absent}
        signers.update((s.leaf, s) for s in state.changed)
        return cls(state.epoch, state.group_context, state.sender_data_secret,
                   SecretTree.from_state(cs, state.secret_tree), signers)


class PastEpochs:
    """The kept epochs, at most ``keep`` of them, the newest just behind the group's."""

    def __init__(self, keep: int = DEFAULT_KEPT, epochs: Iterable[PastEpoch] = ()) -> None:
        self.keep = _checked(keep)
        self._epochs = {e.epoch: e for e in epochs}

    def get(self, epoch: int) -> PastEpoch | None:
        return self._epochs.get(epoch)

    def epochs(self) -> list[int]:
        return sorted(self._epochs)

    def copy(self) -> PastEpochs:
        return PastEpochs(self.keep, [PastEpoch(e.epoch, e.group_context, e.sender_data_secret,
                                                e.secret_tree.copy(), e.signers)
                                      for e in self._epochs.values()])

    def remember(self, left: PastEpoch, now_at: int) -> None:
        """The group moved from ``left`` to epoch ``now_at``: keep it, forget the too old."""
        self._epochs[left.epoch] = left
        self.limit(self.keep, now_at)

    def limit(self, keep: int, now_at: int) -> None:
        """Keep at most ``keep`` epochs behind ``now_at``, deleting the keys of older ones."""
        self.keep = _checked(keep)
        for e in [e for e in self._epochs if e < now_at - keep]:
            del self._epochs[e]

    def to_state(self, members: Mapping[int, _Signing]) -> PastEpochsState:
        """The kept epochs, given the group's current members (leaf -> its LeafNode)."""
        states = []
        newer = members
        for e in reversed(self.epochs()):
            past = self._epochs[e]
            states.append(past.to_state(newer))
            newer = past.signers
        return PastEpochsState(self.keep, states)

    @classmethod
    def from_state(cls, cs: CipherSuite, state: PastEpochsState,
                   members: Mapping[int, _Signing]) -> PastEpochs:
        epochs = []
        newer = members
        for s in state.epochs:
            epochs.append(PastEpoch.from_state(cs, s, newer))
            newer = epochs[-1].signers
        return cls(state.keep, epochs)


def _same(a: _Signing | None, b: _Signing) -> bool:
    return a is b or (a is not None and a.signature_key == b.signature_key
                      and a.credential == b.credential)


def _checked(keep: int) -> int:
    if keep < 0:
        raise ValueError("the number of past epochs kept cannot be negative")
    return keep
