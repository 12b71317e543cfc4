"""Crypto benchmarks: application messages and add-one-member commits (suite 3 by default).

Every figure is printed as ``figure: NAME = VALUE UNIT`` on a line of its own.

Groups of 128 and 1,024 members are set up directly in their steady state (every member
has committed once, so every parent node holds a key) rather than by a thousand real
commits each processed by every member, which would take hours. The commit and its
processing that are timed are the real code paths, on a real ratchet tree with signed,
attested leaves; only the setup is synthesised.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crypto import key_schedule as ks
from crypto import tree_math as tm
from crypto.cipher_suite import CipherSuite, suite
from crypto.credential import attest, organisation_validator
from crypto.extensions import PROTOCOL_VERSION_MLS10
from crypto.group import FOREVER, Group, create_key_package, default_capabilities
from crypto.group_context import GroupContext
from crypto.leaf_node import KEY_PACKAGE, LeafNode
from crypto.primitives import ed25519_public
from crypto.ratchet_tree import ParentNode, RatchetTree
from crypto.secret_tree import SecretTree

ORG_SEED = b"\x07" * 32


def figure(name: str, value: float, unit: str) -> None:
    print(f"figure: {name} = {value:.1f} {unit}", flush=True)


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in seconds (median: the machine has two busy cores)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _device(cs: CipherSuite, i: int) -> tuple[bytes, object]:
    sig = os.urandom(32)
    cred = attest(ORG_SEED, f"user-{i}".encode(), b"phone", ed25519_public(sig))
    return sig, cred


def steady_state_pair(cs: CipherSuite, n: int) -> tuple[Group, Group]:
    """Two members (leaf 0 and leaf n-1) of an n-member group whose tree is full of keys."""
    validator = organisation_validator(ed25519_public(ORG_SEED))
    width = 1
    while (width + 1) // 2 < n:
        width = 2 * width + 1
    nodes: list[LeafNode | ParentNode | None] = [None] * width
    privs: dict[int, bytes] = {}
    sigs: dict[int, bytes] = {}
    for i in range(n):
        sig, cred = _device(cs, i)
        enc_priv, enc_pub = cs.derive_key_pair(os.urandom(32))
        privs[2 * i], sigs[i] = enc_priv, sig
        nodes[2 * i] = LeafNode(enc_pub, ed25519_public(sig), cred,  # type: ignore[arg-type]
                                default_capabilities(cs, cred), KEY_PACKAGE,  # type: ignore[arg-type]
                                FOREVER, b"", [], b"").signed(cs, sig)
    for x in range(1, width, 2):
        if any(nodes[2 * leaf] is not None for leaf in range(n) if tm.is_in_subtree(x, 2 * leaf)):
            priv, pub = cs.derive_key_pair(os.urandom(32))
            privs[x] = priv
            nodes[x] = ParentNode(pub, b"", [])
    tree = RatchetTree(cs, nodes)
    ctx = GroupContext(PROTOCOL_VERSION_MLS10, cs.id, b"bench-room", 5, tree.tree_hash(),
                       os.urandom(32), [])
    secrets = ks.from_joiner(cs, os.urandom(32), bytes(32), ctx.serialize())
    interim = os.urandom(32)

    def member(leaf: int) -> Group:
        path = [2 * leaf, *tm.direct_path(2 * leaf, tree.n_leaves)]
        return Group(cs, ctx, tree.copy(), leaf, sigs[leaf], {x: privs[x] for x in path},
                     secrets, interim, SecretTree(cs, secrets.encryption_secret, tree.n_leaves),
                     validator)

    return member(0), member(n - 1)


def bench_messages(cs: CipherSuite, repeat: int) -> None:
    a, b = steady_state_pair(cs, 2)
    body = os.urandom(1024)
    figure(f"encrypt_1KiB_suite{cs.id}", best_of(lambda: a.encrypt(body), repeat) * 1e6, "us")
    msgs = [a.encrypt(body) for _ in range(repeat)]
    it = iter(msgs)
    figure(f"decrypt_1KiB_suite{cs.id}", best_of(lambda: b.process(next(it)), repeat) * 1e6,
           "us")


def bench_add(cs: CipherSuite, n: int, repeat: int) -> None:
    a, b = steady_state_pair(cs, n)
    validator = organisation_validator(ed25519_public(ORG_SEED))
    kps = []
    for i in range(repeat):
        sig, cred = _device(cs, 10_000 + i)
        kps.append(create_key_package(cs, cred, sig)[0])  # type: ignore[arg-type]
    kp_iter = iter(kps)
    pendings = []

    def commit() -> None:
        pendings.append(a.commit(add=[next(kp_iter)]))

    t_commit = best_of(commit, repeat)
    receivers = [b.clone() for _ in range(repeat)]
    it = iter(zip(receivers, pendings, strict=True))

    def process() -> None:
        g, p = next(it)
        g.process(p.message)

    t_process = best_of(process, repeat)
    del validator
    figure(f"commit_add_one_member_{n}_suite{cs.id}", t_commit * 1e3, "ms")
    figure(f"process_add_commit_{n}_suite{cs.id}", t_process * 1e3, "ms")
    figure(f"welcome_bytes_{n}_suite{cs.id}", float(len(pendings[0].welcome or b"")), "B")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--suite", type=int, default=3, choices=(1, 3))
    ap.add_argument("--sizes", default="2,16,128,1024")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cs = suite(args.suite)
    bench_messages(cs, max(200, args.repeat))
    for n in (int(s) for s in args.sizes.split(",")):
        bench_add(cs, n, args.repeat)


if __name__ == "__main__":
    main()
