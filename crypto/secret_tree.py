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

    def _leaf_secret(self, leaf: int, *, keep: bool) -> bytes:
        """Walk down from the lowest known ancestor; unless ``keep``, derived secrets replace
        their parents (forward secrecy) and the leaf's secret is handed over."""
        if not 0 <= leaf < self.n_leaves:
            raise ValidationError(f"leaf {leaf} is outside the tree")
        x = 2 * leaf
        path = [x, *tm.direct_path(x, self.n_leaves)]
        k = next(i for i, n in enumerate(path) if n in self._nodes)
        secret = self._nodes[path[k]]
        for i in range(k, 0, -1):
            p, child = path[i], path[i - 1]
            left = self.cs.expand_with_label(secret, b"tree", b"left", self.cs.nh)
            right = self.cs.expand_with_label(secret, b"tree", b"right", self.cs.nh)
            if not keep:
                del self._nodes[p]
                self._nodes[tm.left(p)], self._nodes[tm.right(p)] = left, right
            secret = left if child == tm.left(p) else right
        if not keep:
            del self._nodes[x]
        return secret

    def _ratchet(self, leaf: int, kind: int, *, keep: bool = False) -> _Ratchet:
        """The sender's ratchet; with ``keep`` a throwaway copy that changes nothing."""
        r = self._ratchets.get((leaf, kind))
        if r is None:
            leaf_secret = self._leaf_secret(leaf, keep=keep)
            fresh = {k: _Ratchet(self.cs.expand_with_label(leaf_secret, _LABELS[k], b"",
                                                           self.cs.nh))
                     for k in (HANDSHAKE, APPLICATION)}
            if not keep:
                for k, v in fresh.items():
                    self._ratchets[(leaf, k)] = v
            r = fresh[kind]
        return r

    def _key_nonce(self, secret: bytes, generation: int) -> tuple[bytes, bytes]:
        cs = self.cs
        return (cs.derive_tree_secret(secret, b"key", generation, cs.nk),
                cs.derive_tree_secret(secret, b"nonce", generation, cs.nn))

    def _step(self, secret: bytes, generation: int) -> bytes:
        return self.cs.derive_tree_secret(secret, b"secret", generation, self.cs.nh)

    def generations(self, kind: int) -> int:
        """How many keys of this kind the senders have used so far: the epoch's messages."""
        return sum(r.generation for (_, k), r in self._ratchets.items() if k == kind)

    def next_key(self, leaf: int, kind: int) -> tuple[int, bytes, bytes]:
        """The sender's side: the next generation's key and nonce, then forget them."""
        r = self._ratchet(leaf, kind)
        g = r.generation
        key, nonce = self._key_nonce(r.secret, g)
        r.secret, r.generation = self._step(r.secret, g), g + 1
        return g, key, nonce

    def key_for(self, leaf: int, kind: int, generation: int) -> KeyUse:
        """The receiver's side: the key for a generation, without consuming it yet.

        The caller decrypts and verifies, then ``consume``s the KeyUse, so a message that
        fails a check leaves the ratchet as it was and a good one can never be replayed.
        """
        r = self._ratchet(leaf, kind, keep=True)
        if generation < r.generation:
            kn = r.skipped.get(generation)
            if kn is None:
                raise ReplayError(f"generation {generation} of leaf {leaf} was already used "
                                  "or is too old")
            return KeyUse(leaf, kind, generation, kn[0], kn[1], r.generation, r.secret, {})
        if generation - r.generation > self.max_skip:
            raise ValidationError(f"generation {generation} is too far ahead")
        secret, skipped = r.secret, {}
        for g in range(r.generation, generation):
            skipped[g] = self._key_nonce(secret, g)
            secret = self._step(secret, g)
        key, nonce = self._key_nonce(secret, generation)
        return KeyUse(leaf, kind, generation, key, nonce, generation + 1,
                      self._step(secret, generation), skipped)

    def consume(self, use: KeyUse) -> None:
        r = self._ratchet(use.leaf, use.kind)
        if use.generation < r.generation and not use.skipped and use.next_generation == \
                r.generation:
            if r.skipped.pop(use.generation, None) is None:
                raise ReplayError(f"generation {use.generation} was already used")
            return
        if use.generation < r.generation:
            raise ReplayError(f"generation {use.generation} was already used")
        r.skipped.update(use.skipped)
        r.secret, r.generation = use.next_secret, use.next_generation
        floor = r.generation - self.max_skip
        for old in [g for g in r.skipped if g < floor]:
            del r.skipped[old]


@dataclass(frozen=True)
class KeyUse:
    """A receiver's key for one generation, and the ratchet state once it is used."""

    leaf: int
    kind: int
    generation: int
    key: bytes
    nonce: bytes
    next_generation: int
    next_secret: bytes
    skipped: dict[int, tuple[bytes, bytes]]
