"""The secret tree (RFC 9420 §9): per-sender, per-generation keys for handshake and application.

Consumed keys are deleted at once (forward secrecy); keys skipped by out-of-order delivery
are kept up to ``max_skip`` generations behind the newest, so late messages still open
but a replayed generation finds no key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from crypto import tree_math as tm
from crypto.cipher_suite import CipherSuite
from crypto.codec import OPAQUE, U8, U32, Struct, Vec, struct
from crypto.errors import ReplayError, ValidationError

HANDSHAKE = 0
APPLICATION = 1
_LABELS = (b"handshake", b"application")


@struct
class NodeSecret(Struct):
    node: Annotated[int, U32]
    secret: Annotated[bytes, OPAQUE]


@struct
class SkippedKey(Struct):
    generation: Annotated[int, U32]
    key: Annotated[bytes, OPAQUE]
    nonce: Annotated[bytes, OPAQUE]


@struct
class RatchetState(Struct):
    leaf: Annotated[int, U32]
    kind: Annotated[int, U8]
    secret: Annotated[bytes, OPAQUE]
    generation: Annotated[int, U32]
    skipped: Annotated[list[SkippedKey], Vec(SkippedKey)]


@struct
class SecretTreeState(Struct):
    """The secret tree's wire form inside an exported group state."""

    n_leaves: Annotated[int, U32]
    max_skip: Annotated[int, U32]
    nodes: Annotated[list[NodeSecret], Vec(NodeSecret)]
    ratchets: Annotated[list[RatchetState], Vec(RatchetState)]


@dataclass
class _Ratchet:
    secret: bytes
    generation: int = 0
    skipped: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)


class SecretTree:
    """Derives lazily: a 1,024-member group only ever computes the leaves that speak."""

    def __init__(self, cs: CipherSuite, encryption_secret: bytes, n_leaves: int,
                 max_skip: int = 1000) -> None:
        self.cs = cs
        self.n_leaves = n_leaves
        self.max_skip = max_skip
        self._nodes: dict[int, bytes] = {tm.root(n_leaves): encryption_secret}
        self._ratchets: dict[tuple[int, int], _Ratchet] = {}

    def copy(self) -> SecretTree:
        t = SecretTree.__new__(SecretTree)
        t.cs, t.n_leaves, t.max_skip = self.cs, self.n_leaves, self.max_skip
        t._nodes = dict(self._nodes)
        t._ratchets = {k: _Ratchet(r.secret, r.generation, dict(r.skipped))
                       for k, r in self._ratchets.items()}
        return t

    def to_state(self) -> SecretTreeState:
        return SecretTreeState(
            self.n_leaves, self.max_skip,
            [NodeSecret(n, s) for n, s in sorted(self._nodes.items())],
            [RatchetState(leaf, kind, r.secret, r.generation,
                          [SkippedKey(g, k, n) for g, (k, n) in sorted(r.skipped.items())])
             for (leaf, kind), r in sorted(self._ratchets.items())])

    @classmethod
    def from_state(cls, cs: CipherSuite, state: SecretTreeState) -> SecretTree:
        t = cls.__new__(cls)
        t.cs, t.n_leaves, t.max_skip = cs, state.n_leaves, state.max_skip
        t._nodes = {n.node: n.secret for n in state.nodes}
        t._ratchets = {(r.leaf, r.kind): _Ratchet(r.secret, r.generation,
                                                  {s.generation: (s.key, s.nonce)
                                                   for s in r.skipped})
                       for r in state.ratchets}
        return t

    def _leaf_secret(self, leaf: int) -> bytes:
        if not 0 <= leaf < self.n_leaves:
            raise ValidationError(f"leaf {leaf} is outside the tree")
        x = 2 * leaf
        path = [x, *tm.direct_path(x, self.n_leaves)]
        # walk down from the lowest ancestor whose secret is still known
        k = next(i for i, n in enumerate(path) if n in self._nodes)
        for p in reversed(path[1 : k + 1]):
            secret = self._nodes.pop(p)
            self._nodes[tm.left(p)] = self.cs.expand_with_label(secret, b"tree", b"left",
                                                                self.cs.nh)
            self._nodes[tm.right(p)] = self.cs.expand_with_label(secret, b"tree", b"right",
                                                                 self.cs.nh)
        return self._nodes.pop(x)

    def _ratchet(self, leaf: int, kind: int) -> _Ratchet:
        r = self._ratchets.get((leaf, kind))
        if r is None:
            leaf_secret = self._leaf_secret(leaf)
            for k in (HANDSHAKE, APPLICATION):
                self._ratchets[(leaf, k)] = _Ratchet(
                    self.cs.expand_with_label(leaf_secret, _LABELS[k], b"", self.cs.nh))
            r = self._ratchets[(leaf, kind)]
        return r

    def _key_nonce(self, secret: bytes, generation: int) -> tuple[bytes, bytes]:
        cs = self.cs
        return (cs.derive_tree_secret(secret, b"key", generation, cs.nk),
                cs.derive_tree_secret(secret, b"nonce", generation, cs.nn))

    def _advance(self, r: _Ratchet) -> None:
        r.secret = self.cs.derive_tree_secret(r.secret, b"secret", r.generation, self.cs.nh)
        r.generation += 1

    def next_key(self, leaf: int, kind: int) -> tuple[int, bytes, bytes]:
        """The sender's side: the next generation's key and nonce, then forget them."""
        r = self._ratchet(leaf, kind)
        g = r.generation
        key, nonce = self._key_nonce(r.secret, g)
        self._advance(r)
        return g, key, nonce

    def key_for(self, leaf: int, kind: int, generation: int) -> tuple[bytes, bytes]:
        """The receiver's side: the key for a generation, consumed once."""
        r = self._ratchet(leaf, kind)
        if generation < r.generation:
            kn = r.skipped.pop(generation, None)
            if kn is None:
                raise ReplayError(f"generation {generation} of leaf {leaf} was already used "
                                  "or is too old")
            return kn
        if generation - r.generation > self.max_skip:
            raise ValidationError(f"generation {generation} is too far ahead")
        while r.generation < generation:
            r.skipped[r.generation] = self._key_nonce(r.secret, r.generation)
            self._advance(r)
        key_nonce = self._key_nonce(r.secret, generation)
        self._advance(r)
        for old in [g for g in r.skipped if g < r.generation - self.max_skip]:
            del r.skipped[old]
        return key_nonce
