"""The ratchet tree (RFC 9420 §4, §7): public state, tree hashes, parent hashes, validation.

Nodes are immutable; the tree is a list of them, so copying a tree (to process a commit
without touching the current epoch) costs a list copy. Subtree hashes are cached and
invalidated along the direct path of whatever changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from crypto import tree_math as tm
from crypto.cipher_suite import CipherSuite
from crypto.codec import OPAQUE, U8, U32, Reader, Struct, Vec, opaque, struct
from crypto.errors import DecodeError, ValidationError
from crypto.leaf_node import LeafNode

LEAF = 1
PARENT = 2


@struct
class ParentNode(Struct):
    encryption_key: Annotated[bytes, OPAQUE]
    parent_hash: Annotated[bytes, OPAQUE]
    unmerged_leaves: Annotated[list[int], Vec(U32)]


Node = LeafNode | ParentNode


def _encode_node(w: bytearray, node: Node) -> None:
    if isinstance(node, LeafNode):
        U8.encode(w, LEAF)
    else:
        U8.encode(w, PARENT)
    node.encode_into(w)


def _decode_node(r: Reader) -> Node:
    t = r.u8()
    if t == LEAF:
        return LeafNode.decode_from(r)
    if t == PARENT:
        return ParentNode.decode_from(r)
    raise DecodeError(f"invalid node type {t}")


class RatchetTree:
    """A full left-balanced tree of 2^d leaves; blank nodes are None."""

    __slots__ = ("_hashes", "cs", "nodes")

    def __init__(self, cs: CipherSuite, nodes: list[Node | None]) -> None:
        self.cs = cs
        self.nodes = nodes
        self._hashes: dict[int, bytes] = {}

    # -- construction and wire form -----------------------------------------------------------
    @classmethod
    def with_one_leaf(cls, cs: CipherSuite, leaf: LeafNode) -> RatchetTree:
        return cls(cs, [leaf])

    @classmethod
    def from_wire(cls, cs: CipherSuite, data: bytes) -> RatchetTree:
        """Decode ``optional<Node> ratchet_tree<V>`` and extend it to a full tree."""
        r = Reader(data)
        nodes = r.vector(lambda r: r.optional(_decode_node))
        r.done()
        return cls.from_nodes(cs, nodes)

    @classmethod
    def from_nodes(cls, cs: CipherSuite, nodes: list[Node | None]) -> RatchetTree:
        if not nodes or nodes[-1] is None:
            raise ValidationError("ratchet tree is empty or ends with a blank node")
        width = 1
        while width < len(nodes):
            width = 2 * width + 1
        nodes = nodes + [None] * (width - len(nodes))
        for i, n in enumerate(nodes):
            if n is not None and isinstance(n, LeafNode) != (i % 2 == 0):
                raise ValidationError(f"node {i} has the wrong type for its position")
        return cls(cs, nodes)

    def to_wire(self) -> bytes:
        last = max(i for i, n in enumerate(self.nodes) if n is not None)
        body = bytearray()
        for n in self.nodes[: last + 1]:
            if n is None:
                body.append(0)
            else:
                body.append(1)
                _encode_node(body, n)
        return opaque(bytes(body))

    def copy(self) -> RatchetTree:
        t = RatchetTree(self.cs, list(self.nodes))
        t._hashes = dict(self._hashes)
        return t

    # -- shape ----------------------------------------------------------------------------------
    @property
    def n_leaves(self) -> int:
        return (len(self.nodes) + 1) // 2

    def leaf(self, i: int) -> LeafNode | None:
        if not 0 <= i < self.n_leaves:
            return None
        n = self.nodes[2 * i]
        assert n is None or isinstance(n, LeafNode)
        return n

    def parent_node(self, x: int) -> ParentNode | None:
        n = self.nodes[x]
        assert n is None or isinstance(n, ParentNode)
        return n

    def members(self) -> Iterator[tuple[int, LeafNode]]:
        for i in range(self.n_leaves):
            n = self.nodes[2 * i]
            if n is not None:
                assert isinstance(n, LeafNode)
                yield i, n

    def _set(self, x: int, node: Node | None) -> None:
        self.nodes[x] = node
        self._invalidate(x)

    def _invalidate(self, x: int) -> None:
        h = self._hashes
        n = self.n_leaves
        h.pop(x, None)
        r = tm.root(n)
        while x != r:
            x = tm.parent(x, n)
            h.pop(x, None)

    def set_leaf(self, i: int, leaf: LeafNode | None) -> None:
        self._set(2 * i, leaf)

    def set_parent(self, x: int, node: ParentNode | None) -> None:
        self._set(x, node)

    def blank_path(self, i: int) -> None:
        """Blank a leaf's direct path (Update, Remove, and a committer before its path)."""
        for x in tm.direct_path(2 * i, self.n_leaves):
            if self.nodes[x] is not None:
                self._set(x, None)

    def add_leaf(self, leaf: LeafNode) -> int:
        """Put a new member in the leftmost blank leaf, extending the tree if full."""
        i = next((j for j in range(self.n_leaves) if self.nodes[2 * j] is None), None)
        if i is None:
            i = self.n_leaves
            self.nodes.extend([None] * len(self.nodes) + [None])
        self._set(2 * i, leaf)
        for x in tm.direct_path(2 * i, self.n_leaves):
            p = self.nodes[x]
            if p is not None:
                assert isinstance(p, ParentNode)
                self._set(x, ParentNode(p.encryption_key, p.parent_hash,
                                        sorted([*p.unmerged_leaves, i])))
        return i

    def remove_leaf(self, i: int) -> None:
        self.set_leaf(i, None)
        self.blank_path(i)

    def truncate(self) -> None:
        """Drop the right half while it is wholly blank (RFC 9420 §7.8)."""
        while len(self.nodes) > 1:
            half = len(self.nodes) // 2
            if any(n is not None for n in self.nodes[half + 1 :]):
                break
            for x in range(half, len(self.nodes)):
                self._hashes.pop(x, None)
            del self.nodes[half:]

    # -- resolution and paths -------------------------------------------------------------------
    def resolution(self, x: int) -> list[int]:
        node = self.nodes[x]
        if node is not None:
            if isinstance(node, ParentNode):
                return [x, *(2 * u for u in node.unmerged_leaves)]
            return [x]
        if x % 2 == 0:
            return []
        return self.resolution(tm.left(x)) + self.resolution(tm.right(x))

    def filtered_direct_path(self, i: int) -> list[tuple[int, int]]:
        """(direct-path node, its copath child) for nodes whose copath child resolves."""
        n = self.n_leaves
        x = 2 * i
        out = []
        for p in tm.direct_path(x, n):
            s = tm.right(p) if x < p else tm.left(p)
            if self.resolution(s):
                out.append((p, s))
            x = p
        return out

    # -- tree hash ------------------------------------------------------------------------------
    def tree_hash(self) -> bytes:
        return self.node_hash(tm.root(self.n_leaves))

    def node_hash(self, x: int) -> bytes:
        h = self._hashes.get(x)
        if h is None:
            h = self._compute_hash(x, frozenset())
            self._hashes[x] = h
        return h

    def _compute_hash(self, x: int, excluded: frozenset[int]) -> bytes:
        node = self.nodes[x]
        w = bytearray()
        if x % 2 == 0:
            w.append(LEAF)
            U32.encode(w, x // 2)
            if node is None or x // 2 in excluded:
                w.append(0)
            else:
                w.append(1)
                node.encode_into(w)
        else:
            w.append(PARENT)
            if node is None:
                w.append(0)
            else:
                assert isinstance(node, ParentNode)
                w.append(1)
                if excluded and excluded.intersection(node.unmerged_leaves):
                    node = ParentNode(node.encryption_key, node.parent_hash,
                                      [u for u in node.unmerged_leaves if u not in excluded])
                node.encode_into(w)
            w += opaque(self._hash_excluding(tm.left(x), excluded))
            w += opaque(self._hash_excluding(tm.right(x), excluded))
        return self.cs.hash(bytes(w))

    def _hash_excluding(self, x: int, excluded: frozenset[int]) -> bytes:
        if excluded and any(tm.is_in_subtree(x, 2 * u) for u in excluded):
            return self._compute_hash(x, excluded)
        return self.node_hash(x)

    # -- parent hash ----------------------------------------------------------------------------
    def parent_hash_of(self, p: int, sibling: int) -> bytes:
        """Parent hash of P as seen from its child opposite ``sibling``."""
        node = self.parent_node(p)
        assert node is not None
        sib_hash = self._hash_excluding(sibling, frozenset(node.unmerged_leaves))
        return self.cs.hash(
            opaque(node.encryption_key) + opaque(node.parent_hash) + opaque(sib_hash)
        )

    def set_path_parent_hashes(self, i: int) -> bytes:
        """Fill parent_hash along a committer's filtered direct path, top down.

        Returns the parent hash the committer's leaf must carry.
        """
        path = self.filtered_direct_path(i)
        ph = b""
        for p, s in reversed(path):
            node = self.parent_node(p)
            assert node is not None
            self._set(p, ParentNode(node.encryption_key, ph, node.unmerged_leaves))
            ph = self.parent_hash_of(p, s)
        return ph

    def verify_parent_hashes(self) -> None:
        """Every non-blank parent node must be parent-hash valid (RFC 9420 §7.9.2)."""
        for p in range(1, len(self.nodes), 2):
            node = self.nodes[p]
            if node is None:
                continue
            assert isinstance(node, ParentNode)
            unmerged = {2 * u for u in node.unmerged_leaves}
            found = 0
            for c, s in ((tm.left(p), tm.right(p)), (tm.right(p), tm.left(p))):
                ph = self.parent_hash_of(p, s)
                res = self.resolution(c)
                in_c = {u for u in unmerged if tm.is_in_subtree(c, u)}
                for d in res:
                    dn = self.nodes[d]
                    assert dn is not None
                    if dn.parent_hash == ph and set(res) - {d} == in_c:
                        found += 1
            if found != 1:
                raise ValidationError(f"parent node {p} is not parent-hash valid")

    # -- validation on join ---------------------------------------------------------------------
    def validate(self, group_id: bytes, tree_hash: bytes | None = None) -> None:
        """Checks a joiner applies to a tree it was given (RFC 9420 §12.4.3.1)."""
        if tree_hash is not None and self.tree_hash() != tree_hash:
            raise ValidationError("ratchet tree hash does not match the GroupContext")
        self.verify_parent_hashes()
        keys: set[bytes] = set()
        sig_keys: set[bytes] = set()
        for i, leaf in self.members():
            if not leaf.verify_signature(self.cs, group_id, i):
                raise ValidationError(f"leaf {i} signature is invalid")
            if leaf.encryption_key in keys or leaf.signature_key in sig_keys:
                raise ValidationError(f"leaf {i} reuses a key of another member")
            keys.add(leaf.encryption_key)
            sig_keys.add(leaf.signature_key)
        for p in range(1, len(self.nodes), 2):
            node = self.nodes[p]
            if node is None:
                continue
            assert isinstance(node, ParentNode)
            if node.encryption_key in keys:
                raise ValidationError(f"parent node {p} reuses an encryption key")
            keys.add(node.encryption_key)
            for u in node.unmerged_leaves:
                if not tm.is_in_subtree(p, 2 * u) or self.nodes[2 * u] is None:
                    raise ValidationError(f"parent node {p} lists a bad unmerged leaf {u}")
                # an unmerged leaf must be unmerged at every non-blank node between it and p
                for q in tm.direct_path(2 * u, self.n_leaves):
                    if q == p:
                        break
                    qn = self.nodes[q]
                    if qn is not None and u not in qn.unmerged_leaves:  # type: ignore[union-attr]
                        raise ValidationError(f"unmerged leaf {u} is inconsistent below {p}")

