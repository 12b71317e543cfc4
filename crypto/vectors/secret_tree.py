"""secret-tree.json: sender-data keys and per-leaf ratchet keys (RFC 9420 §6.3.2, §9)."""

from __future__ import annotations

from crypto.framing import sender_data_key_nonce
from crypto.secret_tree import APPLICATION, HANDSHAKE, SecretTree
from crypto.vectors.common import Case, case_suite, expect, unhex

_KINDS = ((HANDSHAKE, "handshake"), (APPLICATION, "application"))


def check(case: Case) -> None:
    cs = case_suite(case)
    sd = case["sender_data"]
    key, nonce = sender_data_key_nonce(cs, unhex(sd["sender_data_secret"]),
                                        unhex(sd["ciphertext"]))
    expect("sender_data key", key, unhex(sd["key"]))
    expect("sender_data nonce", nonce, unhex(sd["nonce"]))

    leaves = case["leaves"]
    # each key is consumed once used, as a receiver does, so a replay would be refused.
    tree = SecretTree(cs, unhex(case["encryption_secret"]), len(leaves))
    for leaf, generations in enumerate(leaves):
        for g in generations:
            for kind, name in _KINDS:
                use = tree.key_for(leaf, kind, g["generation"])
                tree.consume(use)
                where = f"leaf {leaf} generation {g['generation']}"
                expect(f"{where} {name}_key", use.key, unhex(g[f"{name}_key"]))
                expect(f"{where} {name}_nonce", use.nonce, unhex(g[f"{name}_nonce"]))
