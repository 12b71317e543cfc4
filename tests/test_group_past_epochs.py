"""Late application messages of the last epochs still open: real groups, then real engines
against the real relay racing a message with a commit."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from app.client.connection import Connection
from app.client.events import MessageReceived, RoomChanged
from crypto import group_state as gs_
from crypto.cipher_suite import suite
from crypto.errors import MLSError, ReplayError, StaleEpochError, ValidationError
from crypto.framing import PrivateMessage
from crypto.group import ApplicationMessage, Group
from crypto.message import MLSMessage
from crypto.past_epochs import DEFAULT_KEPT
from protocol import frames as fr
from storage.custody import MemoryCustody
from storage.rooms import RoomKind
from tests.engine_support import enroll, group_of, until
from tests.mls_support import make_org, seeded_random


@pytest.fixture(params=[0x0003, 0x0001], ids=["suite3", "suite1"])
def cs(request):
    return suite(request.param)


def _room(cs, *, seed: int = 11):
    """Alice's room with Bob and Carol, every member at the same epoch."""
    rnd = seeded_random(seed)
    org = make_org(seed)
    alice = org.device("alice", "phone", cs, rnd)
    a = alice.create_group()
    joined = []
    for name in ("bob", "carol"):
        kp, secrets = org.device(name, "phone", cs, rnd).key_package()
        pending = a.commit(add=[kp], random=rnd)
        for g in joined:
            g.process(pending.message)
        a.apply(pending)
        joined.append(Group.join(pending.welcome, kp, secrets, org.validator()))  # type: ignore[arg-type]
    b, c = joined
    return org, rnd, a, b, c


def _commit(rnd, committer: Group, *others: Group, **change) -> None:  # type: ignore[no-untyped-def]
    pending = committer.commit(random=rnd, **change)
    committer.apply(pending)
    for g in others:
        g.process(pending.message)


def _opens(group: Group, message: bytes, body: bytes, sender: Group) -> None:
    event = group.process(message)
    assert isinstance(event, ApplicationMessage)
    assert event.data == body and event.sender == sender.my_leaf
    assert event.credential == sender.tree.leaf(sender.my_leaf).credential  # type: ignore[union-attr]


def test_message_sent_before_commits_opens_until_too_old(cs):
    _, rnd, a, b, c = _room(cs)
    n = a.epoch
    late = [a.encrypt(f"lit {i}: tension 9/6".encode()) for i in range(4)]
    _commit(rnd, b, a, c)  # Bob's commit won the race: everyone is at n + 1
    assert a.epoch == b.epoch == c.epoch == n + 1
    _opens(c, late[0], b"lit 0: tension 9/6", a)
    _opens(b, late[0], b"lit 0: tension 9/6", a)  # the committer kept its epoch n too
    _commit(rnd, c, a, b)
    _opens(b, late[1], b"lit 1: tension 9/6", a)
    for _ in range(DEFAULT_KEPT - 2):
        _commit(rnd, a, b, c)
    assert b.epoch == n + DEFAULT_KEPT and b.past_epochs.epochs()[0] == n
    _opens(c, late[2], b"lit 2: tension 9/6", a)
    _commit(rnd, a, b, c)
    assert n not in b.past_epochs.epochs() and len(b.past_epochs.epochs()) == DEFAULT_KEPT
    before = b.export_state()
    with pytest.raises(StaleEpochError):
        b.process(late[3])
    assert b.export_state() == before


def test_fewer_past_epochs_when_configured(cs):
    org, rnd, a, b, c = _room(cs)
    b = Group.import_state(b.export_state(), org.validator(), max_past_epochs=1)
    late = [a.encrypt(b"un"), a.encrypt(b"deux")]
    _commit(rnd, a, b, c)
    _opens(b, late[0], b"un", a)
    _commit(rnd, a, b, c)
    with pytest.raises(StaleEpochError):
        b.process(late[1])
    assert b.past_epochs.epochs() == [b.epoch - 1]
    with pytest.raises(ValueError):
        Group.import_state(b.export_state(), org.validator(), max_past_epochs=-1)


def test_replayed_past_epoch_message_is_refused_without_state_change(cs):
    _, rnd, a, b, c = _room(cs)
    late = a.encrypt(b"une fois")
    _commit(rnd, a, b, c)
    _opens(b, late, b"une fois", a)
    before = b.export_state()
    with pytest.raises(ReplayError):
        b.process(late)
    assert b.export_state() == before


@pytest.mark.parametrize("position", [3, 20, 40, -30, -1])
def test_tampered_past_epoch_message_is_refused_and_state_unchanged(cs, position):
    _, rnd, a, b, c = _room(cs)
    late = a.encrypt(b"allergie: penicilline")
    _commit(rnd, c, a, b)
    bad = bytearray(late)
    bad[position] ^= 0x01
    before = b.export_state()
    with pytest.raises(MLSError):
        b.process(bytes(bad))
    assert b.export_state() == before
    _opens(b, late, b"allergie: penicilline", a)


def test_handshake_of_a_past_epoch_is_refused(cs):
    _, rnd, a, b, c = _room(cs)
    proposal = c.propose_remove(b.my_leaf)
    _commit(rnd, a, b, c)
    before = b.export_state()
    with pytest.raises(StaleEpochError):
        b.process(proposal)
    assert b.export_state() == before


def _signers(group: Group) -> dict[int, dict[int, tuple[bytes, object]]]:
    return {e: {i: (s.signature_key, s.credential)
                for i, s in group.past_epochs.get(e).signers.items()}  # type: ignore[union-attr]
            for e in group.past_epochs.epochs()}


def test_past_epochs_survive_export_and_import(cs):
    org, rnd, a, b, c = _room(cs)
    late = [a.encrypt(b"avant"), a.encrypt(b"pendant")]
    dave, _ = org.device("dave", "phone", cs, rnd).key_package()
    _commit(rnd, c, a, b, add=[dave])  # epochs differ in members: saved as differences
    _opens(b, late[0], b"avant", a)
    restored = Group.import_state(b.export_state(), org.validator())
    assert restored.export_state() == b.export_state()
    assert b.epoch - 1 in b.past_epochs.epochs()
    assert _signers(restored) == _signers(b)
    assert len(b.past_epochs.get(b.epoch - 1).signers) == len(b.members()) - 1  # type: ignore[union-attr]
    with pytest.raises(ReplayError):
        restored.process(late[0])  # its generation stayed consumed across the restart
    _opens(restored, late[1], b"pendant", a)


def test_version_1_state_still_imports_without_past_epochs(cs):
    org, rnd, a, b, c = _room(cs)
    late = a.encrypt(b"ancien format")
    _commit(rnd, a, b, c)
    head, progress, past = gs_.decode(b.export_state())
    assert past is not None and sorted(e.epoch for e in past.epochs) == b.past_epochs.epochs()
    assert past.epochs
    v1 = dataclasses.replace(head, version=1).serialize() + progress.serialize()
    restored = Group.import_state(v1, org.validator())
    assert restored.past_epochs.epochs() == [] and restored.past_epochs.keep == DEFAULT_KEPT
    with pytest.raises(StaleEpochError):
        restored.process(late)
    _opens(restored, a.encrypt(b"nouveau"), b"nouveau", a)


def test_removed_member_message_from_before_its_removal_still_opens(cs):
    _, rnd, a, b, c = _room(cs)
    late = c.encrypt(b"Carol: je quitte le service")
    carol_leaf = c.my_leaf
    pending = a.commit(remove=[carol_leaf], random=rnd)
    a.apply(pending)
    b.process(pending.message)
    assert a.tree.leaf(carol_leaf) is None
    _opens(a, late, b"Carol: je quitte le service", c)
    b = Group.import_state(b.export_state(), b.validator)  # Carol is only in a past epoch now
    _opens(b, late, b"Carol: je quitte le service", c)
    c.process(pending.message)
    assert not c.active and c.past_epochs.epochs() == []
    with pytest.raises(ValidationError):
        c.encrypt(b"encore la ?")
    with pytest.raises(ValidationError):
        c.process(a.encrypt(b"sans Carol"))


# -- engines against the real relay --------------------------------------------------------------
@pytest.mark.asyncio
async def test_message_sent_while_a_commit_wins_reaches_every_member(relay, tmp_path, monkeypatch):
    """Bob's message leaves at epoch n, the relay accepts Alice's commit first: Alice and Carol
    move to n + 1, then open the message with the keys kept of epoch n."""
    custody = MemoryCustody()
    alice, bob, carol, dave = [
        await enroll(relay, tmp_path, name, custody) for name in ("alice", "bob", "carol", "dave")
    ]
    try:
        room_id = await alice.engine.create_room(
            RoomKind.GROUP, "Cardio", [bob.engine.user_id, carol.engine.user_id]
        )
        await bob.next(RoomChanged)
        await carol.next(RoomChanged)
        before = group_of(alice.engine, room_id).epoch
        await until(
            lambda: {group_of(w.engine, room_id).epoch for w in (bob, carol)} == {before}
        )
        held: list[fr.Send] = []
        release = asyncio.Event()
        send = Connection.send

        async def late(self: Connection, frame: fr.Send | fr.Commit | fr.Ack) -> None:
            if isinstance(frame, fr.Send) and frame.kind is fr.Kind.APPLICATION:
                held.append(frame)
                await release.wait()
            await send(self, frame)

        body = "Bilan du lit 7 envoyé"
        with monkeypatch.context() as patched:
            patched.setattr(Connection, "send", late)
            sending = asyncio.create_task(bob.engine.send_text(room_id, body))
            await until(lambda: bool(held))
            await alice.engine.invite(room_id, [dave.engine.user_id])  # accepted: epoch n + 1
            await dave.next(RoomChanged)
            await until(lambda: group_of(carol.engine, room_id).epoch == before + 1)
            release.set()
            await sending
        sealed = MLSMessage.deserialize(held[0].payload).body
        assert isinstance(sealed, PrivateMessage) and sealed.epoch == before
        for reader in (alice, carol):
            assert (await reader.next(MessageReceived)).message.body == body
            assert group_of(reader.engine, room_id).epoch == before + 1
    finally:
        for w in (alice, bob, carol, dave):
            await w.engine.stop()
