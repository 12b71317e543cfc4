"""welcome.json: open a Welcome, check its GroupInfo signature and confirmation tag (§12.4.3)."""

from __future__ import annotations

from crypto import key_schedule as ks
from crypto.key_package import KeyPackage
from crypto.message import MLSMessage
from crypto.vectors.common import Case, case_suite, expect, unhex
from crypto.welcome import Welcome, open_group_info, open_group_secrets


def check(case: Case) -> None:
    cs = case_suite(case)
    kp = MLSMessage.deserialize(unhex(case["key_package"])).body
    welcome = MLSMessage.deserialize(unhex(case["welcome"])).body
    assert isinstance(kp, KeyPackage) and isinstance(welcome, Welcome)
    expect("Welcome cipher suite", welcome.cipher_suite, cs.id)
    gs = open_group_secrets(cs, welcome, kp.ref(), unhex(case["init_priv"]))
    expect("GroupSecrets PSKs", gs.psks, [])
    no_psks = bytes(cs.nh)
    gi = open_group_info(cs, welcome, gs.joiner_secret, no_psks)
    gi.verify(cs, unhex(case["signer_pub"]))
    ctx = gi.group_context
    epoch = ks.from_joiner(cs, gs.joiner_secret, no_psks, ctx.serialize())
    expect("GroupInfo confirmation_tag",
           cs.mac(epoch.confirmation_key, ctx.confirmed_transcript_hash), gi.confirmation_tag)
