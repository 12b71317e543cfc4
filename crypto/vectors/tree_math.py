"""tree-math.json: array tree arithmetic (RFC 9420 Appendix C); null where a node has none."""

from __future__ import annotations

from collections.abc import Callable

from crypto import tree_math as tm
from crypto.vectors.common import Case, expect


def _or_none(op: Callable[[int], int], x: int) -> int | None:
    """Null in the vectors is where tree_math raises: a leaf's child, the root's parent."""
    try:
        return op(x)
    except ValueError:
        return None


def check(case: Case) -> None:
    n = case["n_leaves"]
    expect("n_nodes", tm.node_width(n), case["n_nodes"])
    expect("root", tm.root(n), case["root"])
    ops: dict[str, Callable[[int], int]] = {
        "left": tm.left,
        "right": tm.right,
        "parent": lambda x: tm.parent(x, n),
        "sibling": lambda x: tm.sibling(x, n),
    }
    for name, op in ops.items():
        for x, want in enumerate(case[name]):
            expect(f"{name}[{x}]", _or_none(op, x), want)
