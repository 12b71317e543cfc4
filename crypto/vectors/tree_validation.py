"""tree-validation.json: resolutions, tree and parent hashes, leaf signatures (RFC 9420 §7)."""

from __future__ import annotations

from crypto.ratchet_tree import RatchetTree
from crypto.vectors.common import Case, case_suite, expect, unhex


def check(case: Case) -> None:
    tree = RatchetTree.from_wire(case_suite(case), unhex(case["tree"]))
    resolutions, hashes = case["resolutions"], case["tree_hashes"]
    expect("node count", len(tree.nodes), len(hashes))
    for x, (resolution, tree_hash) in enumerate(zip(resolutions, hashes, strict=True)):
        expect(f"resolution of node {x}", tree.resolution(x), resolution)
        expect(f"tree hash of node {x}", tree.node_hash(x), unhex(tree_hash))
    tree.validate(unhex(case["group_id"]))
