"""welcome.json: open a Welcome, check its GroupInfo signature and confirmation tag (§12.4.3)."""

from __future__ import annotations

from crypto import key_schedule as ks
from crypto.key_package import KeyPackage
from crypto.message import MLSMessage
from crypto.vectors.common import Case, case_suite, expect, unhex
from crypto.welcome import GroupInfo, GroupSecrets, Welcome


def check(case: Case) -> None:
    cs = case_suite(case)
    kp = MLSMessage.deserialize(unhex(case["key_package"])).body
    welcome = MLSMessage.deserialize(unhex(case["welcome"])).body
    assert isinstance(kp, KeyPackage) and isinstance(welcome, Welcome)
    expect("Welcome cipher suite", welcome.cipher_suite, cs.id)
    ref = kp.ref()
    mine = next((s for s in welcome.secrets if s.new_member == ref), None)
    if mine is None:
        raise AssertionError("Welcome holds no group secrets for key_package")
    ct = mine.encrypted_group_secrets
    gs = GroupSecrets.deserialize(cs.decrypt_with_label(
        unhex(case["init_priv"]), b"Welcome", welcome.encrypted_group_info, ct.kem_output,
        ct.ciphertext))
    expect("GroupSecrets PSKs", gs.psks, [])
    no_psks = bytes(cs.nh)
    key, nonce = ks.welcome_key_nonce(cs, ks.welcome_secret(cs, gs.joiner_secret, no_psks))
    gi = GroupInfo.deserialize(cs.aead.open(key, nonce, b"", welcome.encrypted_group_info))
    gi.verify(cs, unhex(case["signer_pub"]))
    ctx = gi.group_context
    epoch = ks.from_joiner(cs, gs.joiner_secret, no_psks, ctx.serialize())
    expect("GroupInfo confirmation_tag",
           cs.mac(epoch.confirmation_key, ctx.confirmed_transcript_hash), gi.confirmation_tag)
