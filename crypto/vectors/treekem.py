"""treekem.json: UpdatePath processing and creation (RFC 9420 §7.4-§7.6, §7.9).

Every update path of the vector is merged (its leaf signature and parent hashes checked)
and decrypted by every other member; then the sender builds a fresh UpdatePath over the
same tree, which every other member must decrypt to the same commit secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from crypto import treekem as tk
from crypto.cipher_suite import CipherSuite
from crypto.codec import fresh_encoding
from crypto.extensions import PROTOCOL_VERSION_MLS10
from crypto.group_context import GroupContext
from crypto.leaf_node import COMMIT
from crypto.ratchet_tree import RatchetTree
from crypto.vectors.common import (
    Case,
    case_suite,
    expect,
    expect_hpke_pair,
    expect_signature_pair,
    unhex,
)


@dataclass(frozen=True)
class _Group:
    """The public state shared by every member: the tree and the GroupContext fields."""

    cs: CipherSuite
    group_id: bytes
    epoch: int
    confirmed_transcript_hash: bytes
    tree: RatchetTree

    def context(self, tree_hash: bytes) -> bytes:
        """test-vectors.md: the GroupContext carries the tree hash after the path is merged."""
        return GroupContext(PROTOCOL_VERSION_MLS10, self.cs.id, self.group_id, self.epoch,
                            tree_hash, self.confirmed_transcript_hash, []).serialize()

    def merge(self, sender: int, path: tk.UpdatePath) -> RatchetTree:
        """The tree after ``path``, checking its leaf and that it is parent-hash valid."""
        leaf = path.leaf_node
        expect(f"path from leaf {sender}: leaf source", leaf.leaf_node_source, COMMIT)
        expect(f"path from leaf {sender}: leaf signature is valid",
               leaf.verify_signature(self.cs, self.group_id, sender), True)
        tree = self.tree.copy()
        tk.apply_new_path_keys(tree, sender, [n.encryption_key for n in path.nodes])
        expect(f"path from leaf {sender}: leaf parent_hash", tree.set_path_parent_hashes(sender),
               leaf.parent_hash)
        tree.set_leaf(sender, leaf)
        tree.verify_parent_hashes()
        return tree

    def receive(self, sender: int, path: tk.UpdatePath, context: bytes, receiver: int,
                private_keys: dict[int, bytes]) -> tuple[bytes, bytes]:
        """What ``receiver`` learns from ``path``: (decrypted path secret, commit secret)."""
        k, secret = tk.decrypt_path(self.cs, self.tree, sender, receiver, path, context, set(),
                                    private_keys)
        secrets, commit_secret = tk.derive_path(self.cs, secret, len(path.nodes) - k)
        for node, s in zip(path.nodes[k:], secrets, strict=True):
            expect(f"leaf {receiver}: public key of a path secret from leaf {sender}",
                   tk.node_key_pair(self.cs, s)[1], node.encryption_key)
        return secret, commit_secret

    def new_path(self, sender: int, signature_priv: bytes) -> tuple[tk.UpdatePath, bytes]:
        """A fresh UpdatePath from ``sender``, and the commit secret it carries."""
        new = tk.create_path(self.cs, self.tree.copy(), sender, signature_priv, self.group_id,
                             self.context, set())
        return new.update_path, new.commit_secret


def _private_keys(group: _Group, leaf: Case) -> dict[int, bytes]:
    """One member's private state, each key checked against the public tree."""
    i = leaf["index"]
    node = group.tree.leaf(i)
    assert node is not None, f"leaf {i} has private keys but is blank"
    keys = {2 * i: unhex(leaf["encryption_priv"])}
    expect_hpke_pair(f"leaf {i} encryption_priv", keys[2 * i], node.encryption_key)
    expect_signature_pair(f"leaf {i} signature_priv", unhex(leaf["signature_priv"]),
                          node.signature_key)
    for p in leaf["path_secrets"]:
        x = p["node"]
        parent = group.tree.parent_node(x)
        assert parent is not None, f"leaf {i} has a path secret for blank node {x}"
        keys[x], pub = tk.node_key_pair(group.cs, unhex(p["path_secret"]))
        expect(f"leaf {i}: public key of node {x}'s path secret", pub, parent.encryption_key)
    return keys


def check(case: Case) -> None:
    cs = case_suite(case)
    group = _Group(cs, unhex(case["group_id"]), case["epoch"],
                   unhex(case["confirmed_transcript_hash"]),
                   RatchetTree.from_wire(cs, unhex(case["ratchet_tree"])))
    privates = {leaf["index"]: _private_keys(group, leaf) for leaf in case["leaves_private"]}
    signature_privs = {leaf["index"]: unhex(leaf["signature_priv"])
                       for leaf in case["leaves_private"]}
    expect("members with private state", sorted(privates), [i for i, _ in group.tree.members()])
    for u in case["update_paths"]:
        sender = u["sender"]
        with fresh_encoding():  # the tree hash then re-encodes the leaf, not its wire bytes
            path = tk.UpdatePath.deserialize(unhex(u["update_path"]))
        merged = group.merge(sender, path)
        expect(f"path from leaf {sender}: tree_hash_after", merged.tree_hash(),
               unhex(u["tree_hash_after"]))
        context = group.context(merged.tree_hash())
        for j, keys in privates.items():
            if j == sender:
                continue
            secret, commit_secret = group.receive(sender, path, context, j, keys)
            expect(f"path from leaf {sender}: leaf {j} path secret", secret,
                   unhex(u["path_secrets"][j]))
            expect(f"path from leaf {sender}: leaf {j} commit_secret", commit_secret,
                   unhex(u["commit_secret"]))

        new_path, new_commit_secret = group.new_path(sender, signature_privs[sender])
        context = group.context(group.merge(sender, new_path).tree_hash())
        for j, keys in privates.items():
            if j != sender:
                expect(f"fresh path from leaf {sender}: leaf {j} commit secret",
                       group.receive(sender, new_path, context, j, keys)[1], new_commit_secret)
