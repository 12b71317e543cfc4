"""Receipts end to end: delivered, read and acknowledged travel back encrypted and move the
sender's copy forward, without ever showing as messages."""

from __future__ import annotations

import asyncio

import pytest

from app.client.engine import EngineError
from app.client.events import MessageReceived, ReceiptReceived, RoomChanged, UrgentReceived
from storage.custody import MemoryCustody
from storage.rooms import RoomKind
from storage.status import MessageStatus
from tests.engine_support import enroll, pair, until

URGENT = "Patient lit 12 désature"


@pytest.mark.asyncio
async def test_delivered_read_and_acknowledged(relay, tmp_path):
    custody = MemoryCustody()
    alice, bob, room_id = await pair(relay, tmp_path, custody, RoomKind.DIRECT, "Avis")
    try:
        normal = await alice.engine.send_text(room_id, "Bilan demain")
        urgent = await alice.engine.send_text(room_id, URGENT, urgent=True)
        for _ in range(2):
            await bob.next(MessageReceived)
        assert (await bob.next(UrgentReceived)).message.ref == urgent

        def status_at_alice() -> dict[str, MessageStatus]:
            return {m.body or "": m.status for m in alice.engine.messages(room_id)}

        await until(lambda: set(status_at_alice().values()) == {MessageStatus.DELIVERED})
        assert [m.ref for m in bob.engine.unacknowledged_urgent()] == [urgent]

        await bob.engine.mark_read(room_id, urgent)
        await until(lambda: set(status_at_alice().values()) == {MessageStatus.READ})

        with pytest.raises(EngineError, match="not urgent"):
            await bob.engine.acknowledge(normal)
        await bob.engine.acknowledge(urgent)
        await until(lambda: status_at_alice()[URGENT] is MessageStatus.ACKNOWLEDGED)
        assert bob.engine.unacknowledged_urgent() == []

        receipts = []
        while not alice.events.empty():
            event = alice.events.get_nowait()
            if isinstance(event, ReceiptReceived):
                receipts.append((event.message_ref, event.user_id, event.kind, event.room.id))
        bob_id = bob.engine.user_id
        assert receipts == [
            (normal, bob_id, MessageStatus.DELIVERED, room_id),
            (urgent, bob_id, MessageStatus.DELIVERED, room_id),
            (normal, bob_id, MessageStatus.READ, room_id),
            (urgent, bob_id, MessageStatus.READ, room_id),
            (urgent, bob_id, MessageStatus.ACKNOWLEDGED, room_id),
        ]
        assert status_at_alice()["Bilan demain"] is MessageStatus.READ
        # Receipts are neither messages nor receipted back, on either side.
        assert [m.ref for m in alice.engine.messages(room_id)] == [normal, urgent]
        assert [m.ref for m in bob.engine.messages(room_id)] == [normal, urgent]
        await until(lambda: alice.engine.unsent() == 0 and bob.engine.unsent() == 0)
        assert alice.events.empty() and bob.events.empty()
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


@pytest.mark.asyncio
async def test_a_large_room_sends_read_receipts_but_no_delivered_ones(relay, tmp_path):
    custody = MemoryCustody()
    alice, bob, carla = [await enroll(relay, tmp_path, name, custody)
                         for name in ("alice", "bob", "carla")]
    bob.engine.delivered_receipt_devices = 2  # a room of 3 devices counts as large for Bob
    try:
        room_id = await alice.engine.create_room(RoomKind.GROUP, "Staff",
                                                 [bob.engine.user_id, carla.engine.user_id])
        await bob.next(RoomChanged)
        await carla.next(RoomChanged)
        ref = await alice.engine.send_text(room_id, "Staff à 8h30")
        await bob.next(MessageReceived)
        await carla.next(MessageReceived)
        first = await alice.next(ReceiptReceived)
        assert (first.user_id, first.kind) == (carla.engine.user_id, MessageStatus.DELIVERED)

        await bob.engine.mark_read(room_id, ref)
        event = await alice.next(ReceiptReceived)
        assert (event.user_id, event.kind) == (bob.engine.user_id, MessageStatus.READ)
        await until(lambda: bob.engine.unsent() == 0)
        await asyncio.sleep(0.2)  # time for a delivered receipt from Bob, had one been sent
        while not alice.events.empty():
            late = alice.events.get_nowait()
            assert not (isinstance(late, ReceiptReceived) and late.user_id == bob.engine.user_id
                        and late.kind is MessageStatus.DELIVERED)
    finally:
        for member in (alice, bob, carla):
            await member.engine.stop()
