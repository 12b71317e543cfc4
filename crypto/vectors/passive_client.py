"""passive-client-*.json: join from a Welcome, then follow every commit (RFC 9420 §12).

One checker serves the welcome, handling-commit and random scenarios: they differ only in
what the group does, not in what a passive member must compute.
"""

from __future__ import annotations

from crypto.credential import accept_any
from crypto.group import Group, KeyPackageSecrets
from crypto.key_package import KeyPackage
from crypto.message import MLSMessage
from crypto.vectors.common import (
    Case,
    expect,
    expect_hpke_pair,
    expect_signature_pair,
    unhex,
)


def check(case: Case) -> None:
    kp = MLSMessage.deserialize(unhex(case["key_package"])).body
    assert isinstance(kp, KeyPackage)
    secrets = KeyPackageSecrets(unhex(case["init_priv"]), unhex(case["encryption_priv"]),
                                unhex(case["signature_priv"]))
    expect_hpke_pair("init_priv", secrets.init_priv, kp.init_key)
    expect_hpke_pair("encryption_priv", secrets.encryption_priv, kp.leaf_node.encryption_key)
    expect_signature_pair("signature_priv", secrets.signature_priv,
                          kp.leaf_node.signature_key)
    tree = case["ratchet_tree"]
    group = Group.join(
        unhex(case["welcome"]), kp, secrets, accept_any,
        ratchet_tree=None if tree is None else unhex(tree),
        external_psks={unhex(p["psk_id"]): unhex(p["psk"]) for p in case["external_psks"]})
    expect("initial_epoch_authenticator", group.epoch_authenticator,
           unhex(case["initial_epoch_authenticator"]))
    for i, epoch in enumerate(case["epochs"]):
        for proposal in epoch["proposals"]:
            group.process(unhex(proposal))
        group.process(unhex(epoch["commit"]))
        expect(f"epochs[{i}] epoch_authenticator", group.epoch_authenticator,
               unhex(epoch["epoch_authenticator"]))
