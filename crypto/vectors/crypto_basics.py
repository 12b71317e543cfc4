"""crypto-basics.json: the labelled KDF, hash, signature and HPKE wrappers of RFC 9420 §5."""

from __future__ import annotations

from crypto.vectors.common import Case, case_suite, expect, unhex


def check(case: Case) -> None:
    cs = case_suite(case)

    c = case["ref_hash"]
    expect("ref_hash", cs.ref_hash(c["label"].encode(), unhex(c["value"])), unhex(c["out"]))

    c = case["expand_with_label"]
    out = cs.expand_with_label(unhex(c["secret"]), c["label"].encode(), unhex(c["context"]),
                               c["length"])
    expect("expand_with_label", out, unhex(c["out"]))

    c = case["derive_secret"]
    out = cs.derive_secret(unhex(c["secret"]), c["label"].encode())
    expect("derive_secret", out, unhex(c["out"]))

    c = case["derive_tree_secret"]
    out = cs.derive_tree_secret(unhex(c["secret"]), c["label"].encode(), c["generation"],
                                c["length"])
    expect("derive_tree_secret", out, unhex(c["out"]))

    c = case["sign_with_label"]
    label, content, signature = c["label"].encode(), unhex(c["content"]), unhex(c["signature"])
    expect("sign_with_label: given signature verifies",
           cs.verify_with_label(unhex(c["pub"]), label, content, signature), True)
    # Ed25519 is deterministic, so re-signing must reproduce the vector's signature exactly.
    expect("sign_with_label", cs.sign_with_label(unhex(c["priv"]), label, content), signature)

    c = case["encrypt_with_label"]
    priv, label, context = unhex(c["priv"]), c["label"].encode(), unhex(c["context"])
    plaintext = unhex(c["plaintext"])
    opened = cs.decrypt_with_label(priv, label, context, unhex(c["kem_output"]),
                                   unhex(c["ciphertext"]))
    expect("decrypt_with_label of the given ciphertext", opened, plaintext)
    kem_output, ciphertext = cs.encrypt_with_label(unhex(c["pub"]), label, context, plaintext)
    opened = cs.decrypt_with_label(priv, label, context, kem_output, ciphertext)
    expect("decrypt_with_label of a fresh encryption", opened, plaintext)
