"""The client engine end to end: two real engines, the real relay process, MLS in between."""

from __future__ import annotations

import re
import time

import pytest

from app.client.connection import Connection, State
from app.client.engine import Engine, _client_id
from app.client.events import ConnectionChanged, MessageReceived, MessageSent, RoomChanged
from protocol.frames import Send
from storage.custody import MemoryCustody
from storage.members import RoomRole
from storage.rooms import RoomKind
from storage.status import MessageStatus
from tests.engine_support import Watched, enroll, until

MARKER = "ZQX-hemoglobine-7.9"  # must never reach the relay's disk in clear


@pytest.mark.asyncio
async def test_room_messages_and_offline_delivery(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    bob = await enroll(relay, tmp_path, "bob", custody)
    try:
        room_id = await alice.engine.create_room(
            RoomKind.GROUP, f"Cardio {MARKER}", [bob.engine.user_id]
        )
        joined = await bob.next(RoomChanged)
        assert joined.room.id == room_id and joined.room.name == f"Cardio {MARKER}"
        assert joined.room.kind is RoomKind.GROUP
        roles = {m.user_id: m.role for m in bob.engine.members(room_id)}
        assert roles == {alice.engine.user_id: RoomRole.OWNER, bob.engine.user_id: RoomRole.MEMBER}

        bodies = [f"{MARKER} #{i}" for i in range(3)]
        sent = [await alice.engine.send_text(room_id, b) for b in bodies]
        received = [(await bob.next(MessageReceived)).message for _ in bodies]
        assert [m.body for m in received] == bodies
        assert [m.ref for m in received] == sent
        assert {m.sender_user for m in received} == {alice.engine.user_id}
        assert [m.body for m in bob.engine.messages(room_id)] == bodies  # each stored once
        accepted = [(await alice.next(MessageSent)).message_ref for _ in bodies]
        assert accepted == sent
        # the sender's copies carry the relay's time, as the recipient's do: one order for all
        mine = {m.ref: m.server_ts for m in alice.engine.messages(room_id)}
        assert mine == {m.ref: m.server_ts for m in received}
        assert all(m.status >= MessageStatus.SENT for m in alice.engine.messages(room_id))

        reply = await bob.engine.send_text(room_id, "Je passe", urgent=True, reply_to=sent[0])
        answer = (await alice.next(MessageReceived)).message
        assert answer.ref == reply and answer.body == "Je passe"
        assert answer.reply_to == sent[0] and answer.priority == "urgent"

        # Bob offline: the message waits in his mailbox, and comes with his next start.
        await bob.engine.stop()
        await alice.engine.send_text(room_id, f"{MARKER} while away")
        await until(lambda: alice.engine.messages(room_id)[-1].status >= MessageStatus.SENT)
        bob = Watched(Engine.open(tmp_path / "bob", custody))
        await bob.engine.start()
        assert (await bob.next(MessageReceived)).message.body == f"{MARKER} while away"

        # Alice offline: what she writes waits in her outbox, and goes with her next start.
        await alice.engine.stop()
        alice = Watched(Engine.open(tmp_path / "alice", custody))
        queued = await alice.engine.send_text(room_id, f"{MARKER} from the outbox")
        assert alice.engine.messages(room_id)[-1].status is MessageStatus.PENDING
        await alice.engine.start()
        assert (await bob.next(MessageReceived)).message.ref == queued

        bob_bodies = [m.body for m in bob.engine.messages(room_id)]
        assert bob_bodies == [
            *bodies,
            "Je passe",
            f"{MARKER} while away",
            f"{MARKER} from the outbox",
        ]
        assert [r.name for r in alice.engine.rooms()] == [f"Cardio {MARKER}"]
    finally:
        await alice.engine.stop()
        await bob.engine.stop()
    relay.stop()
    written = [*relay.data.glob("relay.db*"), *tmp_path.glob("*/liaison.db*")]
    assert len(written) >= 3
    for path in written:
        assert MARKER.encode() not in path.read_bytes(), path


@pytest.mark.asyncio
async def test_redelivered_envelopes_are_stored_once(relay, tmp_path, monkeypatch):
    """Acks lost on the way: the relay delivers everything again, the cache keeps one copy."""
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    bob = await enroll(relay, tmp_path, "bob", custody)
    try:
        states = []
        bob.engine.subscribe(
            lambda e: states.append(e.state) if isinstance(e, ConnectionChanged) else None
        )
        with monkeypatch.context() as lost:
            lost.setattr(Connection, "ack", _drop_acks)
            room_id = await alice.engine.create_room(RoomKind.DIRECT, "Avis", [bob.engine.user_id])
            await bob.next(RoomChanged)
            for i in range(3):
                await alice.engine.send_text(room_id, f"avis {i}")
            for _ in range(3):
                await bob.next(MessageReceived)
            await bob.engine.stop()
        assert State.OFFLINE in states
        bob = Watched(Engine.open(tmp_path / "bob", custody))
        await bob.engine.start()
        await bob.next(ConnectionChanged)
        await alice.engine.send_text(room_id, "after")
        assert (await bob.next(MessageReceived)).message.body == "after"  # nothing before it
        assert [m.body for m in bob.engine.messages(room_id)] == [
            "avis 0",
            "avis 1",
            "avis 2",
            "after",
        ]
        assert [r.id for r in bob.engine.rooms()] == [room_id]
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


async def _drop_acks(self: Connection, seqs: object) -> None:
    """Connection.ack whose frames never reach the relay."""


def test_message_ids_made_one_after_another_sort_in_that_order_and_never_repeat():
    """Time-ordered ids keep the cache's index on them growing at its end (one page per
    commit, not one per message); 96 random bits keep them unique and unguessable."""
    made = []
    for _ in range(20):
        made.append(_client_id())
        time.sleep(0.002)
    assert sorted(made) == made
    burst = [_client_id() for _ in range(10_000)]
    assert len(set(burst)) == len(burst)
    assert all(re.fullmatch(r"m[0-9a-f]{12}[A-Za-z0-9_-]{16}", i) for i in burst)
    Send(id=made[0], group_id=b"g", payload=b"p")  # the wire accepts it as a client id
