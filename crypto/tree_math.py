"""Array representation of MLS's left-balanced binary trees (RFC 9420 §4.2, Appendix C).

Leaves sit at even node indices (leaf i is node 2i); parents at odd ones.
"""

from __future__ import annotations


def log2(x: int) -> int:
    return x.bit_length() - 1 if x > 0 else 0


def level(x: int) -> int:
    """Height of node x: 0 for leaves; the number of trailing 1 bits."""
    if x & 1 == 0:
        return 0
    k = 0
    while (x >> k) & 1 == 1:
        k += 1
    return k


def node_width(n_leaves: int) -> int:
    return 0 if n_leaves == 0 else 2 * (n_leaves - 1) + 1


def root(n_leaves: int) -> int:
    return (1 << log2(node_width(n_leaves))) - 1


def left(x: int) -> int:
    k = level(x)
    if k == 0:
        raise ValueError("leaf node has no children")
    return x ^ (0x01 << (k - 1))


def right(x: int) -> int:
    k = level(x)
    if k == 0:
        raise ValueError("leaf node has no children")
    return x ^ (0x03 << (k - 1))


def parent(x: int, n_leaves: int) -> int:
    if x == root(n_leaves):
        raise ValueError("root node has no parent")
    k = level(x)
    b = (x >> (k + 1)) & 0x01
    return (x | (1 << k)) ^ (b << (k + 1))


def sibling(x: int, n_leaves: int) -> int:
    p = parent(x, n_leaves)
    return right(p) if x < p else left(p)


def direct_path(x: int, n_leaves: int) -> list[int]:
    r = root(n_leaves)
    path: list[int] = []
    while x != r:
        x = parent(x, n_leaves)
        path.append(x)
    return path


def copath(x: int, n_leaves: int) -> list[int]:
    if x == root(n_leaves):
        return []
    d = [x, *direct_path(x, n_leaves)]
    d.pop()
    return [sibling(y, n_leaves) for y in d]


def is_in_subtree(x: int, y: int) -> bool:
    """Whether node y lies in the subtree rooted at x."""
    k = level(x)
    return (x >> (k + 1)) == (y >> (k + 1))


def common_ancestor(x: int, y: int) -> int:
    """Lowest common ancestor of two nodes (by bit arithmetic)."""
    lx, ly = level(x) + 1, level(y) + 1
    if lx <= ly and (x >> ly) == (y >> ly):
        return y
    if ly <= lx and (x >> lx) == (y >> lx):
        return x
    xn, yn, k = x, y, 0
    while xn != yn:
        xn, yn, k = xn >> 1, yn >> 1, k + 1
    return (xn << k) + (1 << (k - 1)) - 1


def leaf_node(leaf_index: int) -> int:
    return 2 * leaf_index
