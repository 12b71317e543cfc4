"""Frames received together are handled together (one transaction, then one ack), against the
real relay process; and an engine started while the relay is down comes up offline and
connects when the relay is back."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from app.client.connection import State
from app.client.content import TextContent
from app.client.engine import Engine, EngineError
from app.client.events import ConnectionChanged, MessageReceived
from crypto.group import Group
from protocol import frames as fr
from storage.custody import MemoryCustody
from storage.rooms import RoomKind
from tests.engine_support import Watched, group_of, pair, until


def _stored_state(engine: Engine, room_id: str) -> bytes:
    room = engine._store.rooms.get(room_id)
    assert room is not None
    record = engine._store.groups.load(room.group_id)
    assert record is not None
    return record.state


@pytest.mark.asyncio
async def test_a_burst_is_stored_in_order_once_acknowledged_and_its_state_saved(relay, tmp_path):
    custody = MemoryCustody()
    alice, bob, room_id = await pair(relay, tmp_path, custody, RoomKind.GROUP, "Réa")
    try:
        await bob.engine.stop()
        bodies = [f"constantes {i:02}" for i in range(40)]
        for body in bodies:
            await alice.engine.send_text(room_id, body)
        await until(lambda: alice.engine.unsent() == 0)

        bob = Watched(Engine.open(tmp_path / "bob", custody))
        await bob.engine.start()  # the relay hands the mailbox over at once: a burst
        await until(lambda: len(bob.engine.messages(room_id, limit=100)) == len(bodies))
        assert [m.body for m in bob.engine.messages(room_id, limit=100)] == bodies
        received = []
        while not bob.events.empty():
            event = bob.events.get_nowait()
            if isinstance(event, MessageReceived):
                received.append(event.message.body)
        assert received == bodies  # shown in order, once each
        # the state saved at the end of the batch is the one in memory
        assert _stored_state(bob.engine, room_id) == group_of(bob.engine, room_id).export_state()

        await bob.engine.stop()
        bob = Watched(Engine.open(tmp_path / "bob", custody))
        await bob.engine.start()
        await bob.next(ConnectionChanged)
        await alice.engine.send_text(room_id, "après le redémarrage")
        event = await bob.next(MessageReceived)
        assert event.message.body == "après le redémarrage"  # acknowledged: nothing came again
        assert len(bob.engine.messages(room_id, limit=100)) == len(bodies) + 1
    finally:
        await asyncio.gather(alice.engine.stop(), bob.engine.stop())


@pytest.mark.asyncio
async def test_messages_posted_together_are_sealed_together_and_a_refused_one_fails_alone(
    relay, tmp_path
):
    """Five texts sent at once share one seal (one transaction, one group-state write); one
    for a room that does not exist fails on its own, the others arrive in order."""
    custody = MemoryCustody()
    alice, bob, room_id = await pair(relay, tmp_path, custody, RoomKind.GROUP, "Réa")
    sealed: list[int] = []
    seal_all = alice.engine._seal_all

    def counting(seals):  # type: ignore[no-untyped-def]
        sealed.append(len(seals))
        return seal_all(seals)

    alice.engine._seal_all = counting  # type: ignore[method-assign]
    try:
        bodies = [f"bilan {i}" for i in range(5)]
        results = await asyncio.gather(
            *(alice.engine.send_text(room_id, body) for body in bodies[:3]),
            alice.engine.send_text("rnot-a-room", "perdu"),
            *(alice.engine.send_text(room_id, body) for body in bodies[3:]),
            return_exceptions=True)
        assert sealed == [6]
        assert isinstance(results[3], EngineError) and "unknown room" in str(results[3])
        await until(lambda: len(bob.engine.messages(room_id)) == len(bodies))
        assert [m.body for m in bob.engine.messages(room_id)] == bodies
        await until(lambda: alice.engine.unsent() == 0)
        assert [m.body for m in alice.engine.messages(room_id)] == bodies
    finally:
        await asyncio.gather(alice.engine.stop(), bob.engine.stop())


@pytest.mark.asyncio
async def test_a_bad_envelope_in_a_batch_changes_nothing_of_the_others(relay, tmp_path):
    """Real ciphertexts of Alice's group, handed to Bob's engine as one batch: a good one, a
    tampered copy of the next, a redelivery of the first, then the next one intact."""
    custody = MemoryCustody()
    alice, bob, room_id = await pair(relay, tmp_path, custody, RoomKind.GROUP, "Réa")
    try:
        sender = group_of(alice.engine, room_id).clone()  # Alice's own state stays unused
        payloads = [sender.encrypt(TextContent(body=b).model_dump_json().encode())
                    for b in ("premier", "second")]
        tampered = payloads[1][:-1] + bytes([payloads[1][-1] ^ 1])

        def deliver(seq: int, client_id: str, payload: bytes) -> fr.Deliver:
            return fr.Deliver(seq=seq, envelope=fr.Envelope(
                id=client_id, group_id=sender.group_id, sender_device=alice.engine.device_id,
                kind=fr.Kind.APPLICATION, payload=payload, sent_at=time.time()))

        frames = [deliver(10_001, "one", payloads[0]), deliver(10_002, "two", tampered),
                  deliver(10_003, "one", payloads[0]), deliver(10_004, "two", payloads[1])]
        for frame in frames:
            await bob.engine._on_frame(frame)
        assert len(bob.engine._inbound) == len(frames)  # waiting for the connection to idle
        await bob.engine._drain()
        assert [m.body for m in bob.engine.messages(room_id)] == ["premier", "second"]
        stored = Group.import_state(_stored_state(bob.engine, room_id),
                                    group_of(bob.engine, room_id).validator)
        assert stored.export_state() == group_of(bob.engine, room_id).export_state()
        await bob.engine._on_frame(deliver(10_005, "replayed", payloads[1]))
        await bob.engine._drain()  # its key was used, and the stored state knows it
        assert [m.body for m in bob.engine.messages(room_id)] == ["premier", "second"]
    finally:
        await asyncio.gather(alice.engine.stop(), bob.engine.stop())


@pytest.mark.asyncio
async def test_start_with_the_relay_down_comes_up_offline_then_connects(relay, tmp_path):
    custody = MemoryCustody()
    alice, bob, room_id = await pair(relay, tmp_path, custody, RoomKind.GROUP, "Réa")
    try:
        await alice.engine.stop()
        relay.stop(signal.SIGKILL)
        alice = Watched(Engine.open(tmp_path / "alice", custody))
        assert alice.engine.connection_state is State.OFFLINE
        await alice.engine.start()  # no relay: no error
        ref = await alice.engine.send_text(room_id, "envoyé hors ligne")
        assert alice.engine.unsent() == 1
        assert alice.engine.connection_state is not State.CONNECTED

        await asyncio.to_thread(relay.start)
        await until(lambda: alice.engine.connection_state is State.CONNECTED, timeout=60)
        await until(lambda: [m.body for m in bob.engine.messages(room_id)]
                    == ["envoyé hors ligne"], timeout=60)
        await until(lambda: alice.engine.unsent() == 0)
        assert bob.engine.find_message(ref.client_id).sender_user == alice.engine.user_id
    finally:
        await asyncio.gather(alice.engine.stop(), bob.engine.stop())
