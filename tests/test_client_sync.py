"""Sync upkeep against the real relay process: self-updates, KeyPackage top-ups, refused
messages, a commit whose answer was lost in a crash, and a relay SIGKILLed mid-burst."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest

from app.client.engine import Engine, _Change
from app.client.events import MessageFailed, RoomChanged
from app.client.maintenance import MaintenancePolicy, key_packages_missing, refusal_is_final
from app.client.relay_api import RelayClient
from protocol import frames as fr
from protocol.problems import Code, Problem
from storage.custody import MemoryCustody
from storage.rooms import RoomKind
from storage.status import MessageStatus
from tests.engine_support import Watched, enroll, group_of, pair, until
from tests.relay_harness import Device


def _problem(code: Code, status: int) -> Problem:
    return Problem(title=code.value, status=status, code=code)


def test_policy_decisions() -> None:
    policy = MaintenancePolicy(key_packages_low=10, key_packages_full=20)
    assert [key_packages_missing(policy, n) for n in (0, 9, 10, 25)] == [20, 11, 0, 0]
    assert refusal_is_final(_problem(Code.NOT_A_MEMBER, 403))
    assert refusal_is_final(_problem(Code.VALIDATION, 422))
    assert not refusal_is_final(_problem(Code.RATE_LIMITED, 429))
    assert not refusal_is_final(_problem(Code.INTERNAL, 503))


async def _room(alice: Watched, *others: Watched) -> str:
    room_id = await alice.engine.create_room(
        RoomKind.GROUP, "Réa", [o.engine.user_id for o in others]
    )
    for other in others:
        await other.next(RoomChanged)
    return room_id


def _epochs(room_id: str, *watched: Watched) -> set[int]:
    return {group_of(w.engine, room_id).epoch for w in watched}


async def _converse(room_id: str, sender: Watched, body: str, *readers: Watched) -> None:
    await sender.engine.send_text(room_id, body)
    for reader in readers:
        await until(lambda r=reader: body in [m.body for m in r.engine.messages(room_id)])


@pytest.mark.asyncio
async def test_self_update_by_message_count_one_member_at_a_time(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    bob = await enroll(relay, tmp_path, "bob", custody)
    try:
        room_id = await _room(alice, bob)
        start = group_of(alice.engine, room_id).epoch
        policy = MaintenancePolicy(update_after_messages=6)
        alice.engine.maintenance = bob.engine.maintenance = policy
        for i in range(6):
            await alice.engine.send_text(room_id, f"constantes {i}")
        await until(lambda: len(bob.engine.messages(room_id)) == 6)
        await until(lambda: _epochs(room_id, alice, bob) != {start})
        await asyncio.sleep(0.5)  # let a second, racing update show up if there were one
        # Both counted the same messages and may both have tried: the relay took one commit,
        # the other device found the room moved on and dropped its own.
        assert _epochs(room_id, alice, bob) == {start + 1}
        for w in (alice, bob):
            group = group_of(w.engine, room_id)
            assert group.application_messages < policy.update_after_messages
        await _converse(room_id, bob, "après la mise à jour", alice)
        await _converse(room_id, alice, "bien reçu", bob)
    finally:
        for w in (alice, bob):
            await w.engine.stop()


@pytest.mark.asyncio
async def test_a_member_that_only_receives_renews_its_leaf_after_its_count(relay, tmp_path):
    """The count is kept on receiving too (once per batch of deliveries): a nurse who only
    reads a busy room still renews her keys."""
    alice, bob, room_id = await pair(relay, tmp_path, MemoryCustody(), RoomKind.GROUP, "Réa")
    try:
        start = group_of(alice.engine, room_id).epoch
        bob.engine.maintenance = MaintenancePolicy(update_after_messages=6)
        bob.engine.delivered_receipt_devices = 0  # sealing a receipt would check it too
        for i in range(6):
            await alice.engine.send_text(room_id, f"constantes {i}")
        await until(lambda: _epochs(room_id, alice, bob) == {start + 1})
        await _converse(room_id, alice, "après la mise à jour de Bob", bob)
    finally:
        for w in (alice, bob):
            await w.engine.stop()


@pytest.mark.asyncio
async def test_self_update_by_age_at_start(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    bob = await enroll(relay, tmp_path, "bob", custody)
    try:
        room_id = await _room(alice, bob)
        await _converse(room_id, alice, "bonjour", bob)
        start = group_of(bob.engine, room_id).epoch
        await alice.engine.stop()
        await asyncio.sleep(0.6)
        alice = Watched(Engine.open(tmp_path / "alice", custody))
        alice.engine.maintenance = MaintenancePolicy(update_after_seconds=0.5)
        await alice.engine.start()
        await until(lambda: group_of(bob.engine, room_id).epoch == start + 1)
        await until(lambda: group_of(alice.engine, room_id).epoch == start + 1)
        await _converse(room_id, bob, "clé renouvelée", alice)
    finally:
        for w in (alice, bob):
            await w.engine.stop()


async def _available(relay, engine: Engine) -> int:
    async with RelayClient(relay.url) as client:
        await client.login(engine.device_id, engine.account.signature_private_key)
        return (await client.key_package_count()).available


async def _until_published(relay, engine: Engine, count: int) -> None:
    """The engine keeps a KeyPackage's private half before uploading it: wait for the relay's
    count, not the local one, and then check that both agree."""
    async with asyncio.timeout(10):
        while await _available(relay, engine) != count:
            await asyncio.sleep(0.05)
    assert engine._store.key_packages.one_time_count() == count


@pytest.mark.asyncio
async def test_key_packages_topped_up_at_start_and_after_a_welcome(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    bob = await enroll(relay, tmp_path, "bob", custody)
    try:
        assert await _available(relay, bob.engine) == 20
        await bob.engine.stop()
        bob = Watched(Engine.open(tmp_path / "bob", custody))
        bob.engine.maintenance = MaintenancePolicy(key_packages_low=25, key_packages_full=30)
        await bob.engine.start()
        await _until_published(relay, bob.engine, 30)

        bob.engine.maintenance = MaintenancePolicy(key_packages_low=30, key_packages_full=30)
        await _room(alice, bob)  # claims one of Bob's KeyPackages, his Welcome consumes it
        await _until_published(relay, bob.engine, 30)
    finally:
        for w in (alice, bob):
            await w.engine.stop()


@pytest.mark.asyncio
async def test_message_refused_for_good_fails_instead_of_being_resent(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    bob = await enroll(relay, tmp_path, "bob", custody)
    try:
        room_id = await _room(alice, bob)
        await bob.engine.stop()
        await alice.engine.remove(room_id, bob.engine.user_id)
        # Offline, Bob does not know yet: he writes into the room, and the relay refuses it.
        bob = Watched(Engine.open(tmp_path / "bob", custody))
        ref = await bob.engine.send_text(room_id, "je reste ?")
        await bob.engine.start()
        failed = await bob.next(MessageFailed)
        assert failed.message_ref == ref and failed.reason == Code.NOT_A_MEMBER.value
        assert failed.room.id == room_id
        assert bob.engine.unsent() == 0
        assert bob.engine.failure(ref) == Code.NOT_A_MEMBER.value
        message = bob.engine._store.messages.get(ref)
        assert message is not None and message.status is MessageStatus.PENDING
        assert "je reste ?" not in [m.body for m in alice.engine.messages(room_id)]
    finally:
        for w in (alice, bob):
            await w.engine.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("before_restart", ["never_sent", "accepted", "accepted_then_forgotten"])
async def test_commit_sent_before_a_crash_is_resent_and_applied(relay, tmp_path, before_restart):
    """``never_sent``: the frame died with the process; ``accepted``: the relay took it and
    answers the resend from its idempotency record; ``accepted_then_forgotten``: the relay
    restarted after every recipient had the commit, so it no longer knows the client id and
    answers ``stale_epoch``, and what Bob sends next settles it."""
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    bob = await enroll(relay, tmp_path, "bob", custody)
    try:
        room_id = await _room(alice, bob)
        await _converse(room_id, alice, "avant", bob)
        epoch = group_of(alice.engine, room_id).epoch
        group_id = group_of(alice.engine, room_id).group_id

        # The relay goes away: Alice's commit is stored with its next state, then she crashes.
        relay.stop(signal.SIGKILL)
        commit = asyncio.create_task(alice.engine._commit(room_id, _Change(update_from=epoch)))
        await until(lambda: alice.engine._pending_commits.get(group_id) is not None)
        await alice.engine.stop()
        assert commit.cancelled()
        await asyncio.to_thread(relay.start)

        alice = Watched(Engine.open(tmp_path / "alice", custody))
        record = alice.engine._pending_commits.get(group_id)
        assert record is not None and record.epoch == epoch
        if before_restart != "never_sent":  # it reached the relay: Bob moves on without her
            raw = Device(relay, alice.engine.account.signature_private_key,
                         device_id=alice.engine.device_id)
            assert raw.login().status_code == 200
            await raw.connect()
            await raw.send_frame(json.loads(record.frame))
            await raw.pump(lambda d: len(d.answers) == 1)
            assert next(iter(raw.answers.values()))["type"] == "accepted"
            await raw.close()
            await until(lambda: group_of(bob.engine, room_id).epoch == epoch + 1, timeout=20)
        if before_restart == "accepted_then_forgotten":
            await asyncio.sleep(0.5)  # Bob's ack reaches the relay
            relay.stop()
            await asyncio.to_thread(relay.start)  # its first clean-up drops the acked commit

        await alice.engine.start()
        await until(lambda: group_of(bob.engine, room_id).epoch == epoch + 1, timeout=20)
        await _converse(room_id, bob, "après", alice)
        assert group_of(alice.engine, room_id).epoch == epoch + 1
        assert alice.engine._pending_commits.get(group_id) is None
        await _converse(room_id, alice, "reçu", bob)
    finally:
        for w in (alice, bob):
            await w.engine.stop()


@pytest.mark.asyncio
async def test_relay_sigkill_mid_burst_every_message_once_in_order(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    bob = await enroll(relay, tmp_path, "bob", custody)
    carol = await enroll(relay, tmp_path, "carol", custody)
    try:
        room_id = await _room(alice, bob, carol)
        bodies = [f"surveillance {i:03}" for i in range(200)]
        for i, body in enumerate(bodies):
            await alice.engine.send_text(room_id, body)
            if i == 60:
                relay.stop(signal.SIGKILL)
            if i == 120:
                await asyncio.to_thread(relay.start)
            await asyncio.sleep(0)

        def complete(w: Watched) -> bool:
            return len(w.engine.messages(room_id, limit=500)) == len(bodies)

        await until(lambda: complete(bob) and complete(carol), timeout=120)
        await until(lambda: alice.engine.unsent() == 0, timeout=60)
        await asyncio.sleep(0.5)  # anything redelivered after the restart would show now
        for w in (alice, bob, carol):
            assert [m.body for m in w.engine.messages(room_id, limit=500)] == bodies
        assert all(m.status >= MessageStatus.SENT for m in alice.engine.messages(room_id, 500))
    finally:
        for w in (alice, bob, carol):
            await w.engine.stop()


@pytest.mark.asyncio
async def test_rate_limited_message_is_retried_after_a_backoff(relay, tmp_path):
    """The relay limits no WebSocket frame today, so its refusal is written here; the rest is
    real: the outbox row, the resend, the relay's deduplication, Bob's cache."""
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    bob = await enroll(relay, tmp_path, "bob", custody)
    try:
        room_id = await _room(alice, bob)
        relay.stop(signal.SIGKILL)
        ref = await alice.engine.send_text(room_id, "pas si vite")
        before = time.time()
        await alice.engine._on_frame(
            fr.Refused(id=ref.client_id, problem=_problem(Code.RATE_LIMITED, 429))
        )
        entry = alice.engine._store.outbox.get(ref.client_id)
        assert entry is not None and entry.attempts == 1
        assert entry.next_attempt_at > before and entry.last_error == Code.RATE_LIMITED.value
        assert alice.engine.failure(ref) is None
        await asyncio.to_thread(relay.start)
        # the relay restart and the reconnection backoff take a few seconds on a busy machine
        await until(
            lambda: [m.body for m in bob.engine.messages(room_id)] == ["pas si vite"], timeout=45
        )
        await until(lambda: alice.engine.unsent() == 0, timeout=45)
        await asyncio.sleep(1.0)  # the backoff's own resend comes and is deduplicated
        assert [m.body for m in bob.engine.messages(room_id)] == ["pas si vite"]
    finally:
        for w in (alice, bob):
            await w.engine.stop()
