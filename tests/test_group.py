"""The MLS group API as the client engine uses it: real keys, real messages, no mocks."""

from __future__ import annotations

import pytest

from crypto.cipher_suite import suite
from crypto.credential import attest
from crypto.errors import (
    CredentialError,
    DecodeError,
    MLSError,
    ReplayError,
    StaleEpochError,
    ValidationError,
)
from crypto.group import ApplicationMessage, CommitApplied, Group, ProposalReceived
from crypto.primitives import ed25519_public
from tests.mls_support import make_org, seeded_random


@pytest.fixture(params=[0x0003, 0x0001], ids=["suite3", "suite1"])
def cs(request):
    return suite(request.param)


def _pair(cs, seed=7):
    rnd = seeded_random(seed)
    org = make_org(seed)
    alice = org.device("alice", "phone", cs, rnd)
    bob = org.device("bob", "desktop", cs, rnd)
    a = alice.create_group()
    kp, secrets = bob.key_package()
    pending = a.commit(add=[kp], random=rnd)
    a.apply(pending)
    assert pending.welcome is not None
    b = Group.join(pending.welcome, kp, secrets, org.validator())
    return org, rnd, a, b


def _trio(cs):
    """Alice, Bob and Carol in one room (Carol added by Alice)."""
    org, rnd, a, b = _pair(cs)
    carol = org.device("carol", "phone", cs, rnd)
    kp, sec = carol.key_package()
    p = a.commit(add=[kp], random=rnd)
    a.apply(p)
    b.process(p.message)
    c = Group.join(p.welcome, kp, sec, org.validator())  # type: ignore[arg-type]
    return org, rnd, a, b, c


def test_two_members_agree_and_exchange_messages(cs):
    _, _, a, b = _pair(cs)
    assert a.epoch == b.epoch == 1
    assert a.epoch_authenticator == b.epoch_authenticator
    ev = b.process(a.encrypt(b"Patient en salle 12: hemoglobine 7,9 g/dL"))
    assert isinstance(ev, ApplicationMessage)
    assert ev.data == b"Patient en salle 12: hemoglobine 7,9 g/dL" and ev.sender == a.my_leaf
    ev = a.process(b.encrypt(b"Je passe dans 5 min", b"ad"))
    assert isinstance(ev, ApplicationMessage) and ev.authenticated_data == b"ad"
    assert a.export_secret(b"doc", b"ctx", 32) == b.export_secret(b"doc", b"ctx", 32)


def test_both_members_count_the_epochs_messages_and_a_commit_restarts_the_count(cs):
    _, rnd, a, b = _pair(cs)
    assert a.member_count == b.member_count == len(a.members()) == 2
    assert a.application_messages == b.application_messages == 0
    late = a.encrypt(b"un")
    b.process(a.encrypt(b"deux"))  # "un" arrives after "deux": its generation counts at once
    a.process(b.encrypt(b"trois"))
    assert a.application_messages == b.application_messages == 3
    b.process(late)
    assert b.application_messages == 3  # a late message was counted already
    pending = b.commit(random=rnd)
    b.apply(pending)
    a.process(pending.message)
    assert a.application_messages == b.application_messages == 0


def test_ciphertext_hides_the_body(cs):
    _, _, a, _ = _pair(cs)
    body = b"Mme Dupont, lit 4, allergie penicilline"
    wire = a.encrypt(body)
    assert body not in wire and b"Dupont" not in wire


def test_replayed_application_message_is_refused_without_state_change(cs):
    _, _, a, b = _pair(cs)
    msg = a.encrypt(b"once")
    b.process(msg)
    before = b.export_state()
    with pytest.raises(ReplayError):
        b.process(msg)
    assert b.export_state() == before


def test_out_of_order_within_window_is_accepted(cs):
    _, _, a, b = _pair(cs)
    msgs = [a.encrypt(f"m{i}".encode()) for i in range(6)]
    order = [5, 0, 3, 1, 4, 2]
    got = [b.process(msgs[i]).data for i in order]  # type: ignore[union-attr]
    assert got == [f"m{i}".encode() for i in order]


def test_generation_too_far_ahead_is_refused(cs):
    _, _, a, b = _pair(cs)
    b.max_skip = b.secret_tree.max_skip = 4
    msgs = [a.encrypt(b"x") for _ in range(7)]
    with pytest.raises(ValidationError):
        b.process(msgs[6])
    assert b.process(msgs[3]).data == b"x"  # type: ignore[union-attr]


@pytest.mark.parametrize("position", [0, 3, 10, 20, 40, -30, -17, -1])
def test_tampered_message_is_refused_and_state_unchanged(cs, position):
    _, _, a, b = _pair(cs)
    msg = bytearray(a.encrypt(b"urgent: appeler le 2222"))
    msg[position] ^= 0x01
    before = b.export_state()
    with pytest.raises(MLSError):
        b.process(bytes(msg))
    assert b.export_state() == before


def test_tampered_commit_is_refused_and_state_unchanged(cs):
    org, rnd, a, b = _pair(cs)
    carol = org.device("carol", "phone", cs, rnd)
    kp, _ = carol.key_package()
    pending = a.commit(add=[kp], random=rnd)
    before = b.export_state()
    for pos in (30, len(pending.message) // 2, len(pending.message) - 5):
        bad = bytearray(pending.message)
        bad[pos] ^= 0x80
        with pytest.raises(MLSError):
            b.process(bytes(bad))
        assert b.export_state() == before
    assert isinstance(b.process(pending.message), CommitApplied)


def test_stale_epoch_message_is_refused(cs):
    """Without past epochs kept (tests/test_group_past_epochs.py covers keeping them)."""
    org, rnd, a, b = _pair(cs)
    b = Group.import_state(b.export_state(), org.validator(), max_past_epochs=0)
    old = a.encrypt(b"old epoch")
    pending = a.commit(random=rnd)
    a.apply(pending)
    b.process(pending.message)
    with pytest.raises(StaleEpochError):
        b.process(old)


def test_removed_member_cannot_follow(cs):
    _org, rnd, a, b, c = _trio(cs)
    removal = a.commit(remove=[b.my_leaf], random=rnd)
    a.apply(removal)
    c.process(removal.message)
    ev = b.process(removal.message)
    assert isinstance(ev, CommitApplied) and ev.removed_me and not b.active
    secret = a.encrypt(b"after removal")
    assert c.process(secret).data == b"after removal"  # type: ignore[union-attr]
    with pytest.raises(ValidationError):
        b.process(secret)
    assert a.epoch_authenticator == c.epoch_authenticator


def test_unattested_key_package_is_refused(cs):
    _, rnd, a, _ = _pair(cs)
    rogue_org = make_org(99)
    mallory = rogue_org.device("mallory", "laptop", cs, rnd)
    kp, _ = mallory.key_package()
    with pytest.raises(CredentialError):
        a.commit(add=[kp], random=rnd)


def test_credential_for_another_signature_key_is_refused(cs):
    org, rnd, a, _ = _pair(cs)
    eve = org.device("eve", "phone", cs, rnd)
    # a valid attestation, but over someone else's signature key
    eve.credential = attest(org.seed, b"eve", b"phone", ed25519_public(rnd(32)))
    kp, _ = eve.key_package()
    with pytest.raises(CredentialError):
        a.commit(add=[kp], random=rnd)


def test_welcome_with_unattested_member_is_refused(cs):
    rnd = seeded_random(3)
    lax_org, strict_org = make_org(3), make_org(4)
    alice = lax_org.device("alice", "phone", cs, rnd)
    bob = strict_org.device("bob", "phone", cs, rnd)
    a = Group.create(cs, b"g", alice.credential, alice.signature_priv,  # type: ignore[arg-type]
                     lambda c, k: None, random=rnd)
    kp, sec = bob.key_package()
    p = a.commit(add=[kp], random=rnd)
    with pytest.raises(CredentialError):
        Group.join(p.welcome, kp, sec, strict_org.validator())  # type: ignore[arg-type]


def test_proposals_by_reference_and_self_update(cs):
    _org, rnd, a, b, c = _trio(cs)
    upd = b.propose_update(random=rnd)
    for g in (a, c):
        assert isinstance(g.process(upd), ProposalReceived)
    commit = a.commit(random=rnd)
    a.apply(commit)
    b.process(commit.message)
    c.process(commit.message)
    assert a.epoch_authenticator == b.epoch_authenticator == c.epoch_authenticator
    assert b.process(c.encrypt(b"ok")).data == b"ok"  # type: ignore[union-attr]


def test_external_psk_commit(cs):
    _, rnd, a, b = _pair(cs)
    for g in (a, b):
        g.add_external_psk(b"ward-7", b"\x42" * 32)
    p = a.commit(psks=[b"ward-7"], random=rnd)
    a.apply(p)
    b.process(p.message)
    assert a.epoch_authenticator == b.epoch_authenticator


def test_export_import_state_round_trip(cs):
    org, rnd, a, b = _pair(cs)
    a.encrypt(b"advance the ratchet")
    restored = Group.import_state(b.export_state(), org.validator())
    assert restored.export_state() == b.export_state()
    msg = a.encrypt(b"after restore")
    assert restored.process(msg).data == b"after restore"  # type: ignore[union-attr]
    p = a.commit(random=rnd)
    a.apply(p)
    restored.process(p.message)
    assert restored.epoch_authenticator == a.epoch_authenticator


def test_garbage_is_a_decode_error(cs):
    _, _, _, b = _pair(cs)
    with pytest.raises(DecodeError):
        b.process(b"\x00\x01\x00\x02garbage")


def test_member_cannot_impersonate_another_member(cs):
    """Every member can derive every sender's keys; only the signature says who spoke."""
    from crypto import framing as fr
    from crypto.message import MLSMessage

    _org, _rnd, a, b, c = _trio(cs)
    forged = fr.FramedContent(c.group_id, c.epoch, fr.Sender(fr.MEMBER, a.my_leaf), b"",
                              b"Arretez le traitement (signe: Alice)")
    sig = fr.sign(c.cs, c.signature_priv, fr.PRIVATE_MESSAGE, forged, c.context.serialize())
    ac = fr.AuthenticatedContent(fr.PRIVATE_MESSAGE, forged, fr.AuthData(sig))
    wire = MLSMessage(fr.protect_private(c.cs, ac, c.clone().secret_tree,
                                         c.secrets.sender_data_secret)).serialize()
    before = b.export_state()
    with pytest.raises(ValidationError, match="signature"):
        b.process(wire)
    assert b.export_state() == before


def test_lone_member_can_commit_then_add(cs):
    rnd = seeded_random(11)
    org = make_org(11)
    solo = org.device("alice", "phone", cs, rnd).create_group()
    p = solo.commit(random=rnd)
    solo.apply(p)
    assert solo.epoch == 1
    bob = org.device("bob", "phone", cs, rnd)
    kp, sec = bob.key_package()
    p = solo.commit(add=[kp], random=rnd)
    solo.apply(p)
    b = Group.join(p.welcome, kp, sec, org.validator())  # type: ignore[arg-type]
    assert b.epoch_authenticator == solo.epoch_authenticator
