"""tree-operations.json: Add, Update and Remove applied to a ratchet tree (RFC 9420 §12.1)."""

from __future__ import annotations

from crypto import proposals as prop
from crypto.ratchet_tree import RatchetTree
from crypto.vectors.common import Case, case_suite, expect, unhex


def _apply(tree: RatchetTree, proposal: prop.Proposal, sender: int) -> None:
    """The tree half of applying one proposal, as a commit does (§12.3)."""
    body = proposal.body
    if isinstance(body, prop.Add):
        tree.add_leaf(body.key_package.leaf_node)
    elif isinstance(body, prop.Update):
        tree.set_leaf(sender, body.leaf_node)
        tree.blank_path(sender)
    elif isinstance(body, prop.Remove):
        tree.remove_leaf(body.removed)
        tree.truncate()
    else:
        raise AssertionError(f"proposal type {proposal.proposal_type} does not change the tree")


def check(case: Case) -> None:
    tree = RatchetTree.from_wire(case_suite(case), unhex(case["tree_before"]))
    expect("tree_hash_before", tree.tree_hash(), unhex(case["tree_hash_before"]))
    _apply(tree, prop.Proposal.deserialize(unhex(case["proposal"])), case["proposal_sender"])
    expect("tree_after", tree.to_wire(), unhex(case["tree_after"]))
    expect("tree_hash_after", tree.tree_hash(), unhex(case["tree_hash_after"]))
