"""The device's WebSocket: the sans-I/O protocol on frames, the adapter on a real relay."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from app.client.connection import (
    Connection,
    ProtocolViolation,
    State,
    SyncProtocol,
    backoff_delay,
)
from app.client.relay_api import RelayClient, RelayError
from protocol import frames as fr
from protocol.encoding import b64encode
from protocol.problems import Code
from tests.relay_harness import free_port

GROUP = b"group-1"


def _send(client_id: str, body: bytes = b"ciphertext") -> fr.Send:
    return fr.Send(id=client_id, group_id=GROUP, payload=body)


# -- SyncProtocol ----------------------------------------------------------------------------
def test_protocol_tracks_in_flight_until_answered():
    p = SyncProtocol()
    text = p.send(_send("a"))
    assert json.loads(text) == {"type": "send", "id": "a", "group_id": b64encode(GROUP),
                                "kind": "application", "payload": b64encode(b"ciphertext")}
    p.send(fr.Commit(id="b", group_id=GROUP, epoch=3, payload=b"c", add_devices=["d_1"]))
    assert p.send(_send("a")) == text  # the same frame again is harmless
    with pytest.raises(ValueError):
        p.send(_send("a", b"other"))
    assert p.in_flight == ["a", "b"] and len(p.resend()) == 2
    accepted = p.receive('{"type": "accepted", "id": "b", "epoch": 4}')
    assert accepted == [fr.Accepted(id="b", epoch=4)]
    assert p.in_flight == ["a"] and p.resend() == [text]
    (stale,) = p.receive(fr.Refused(id="a", problem={
        "title": "Conflict", "status": 409, "code": "stale_epoch", "epoch": 7}).model_dump_json())
    assert isinstance(stale, fr.Refused) and stale.problem.code is Code.STALE_EPOCH
    assert stale.problem.epoch == 7 and p.in_flight == []


def test_transient_refusal_stays_in_flight():
    p = SyncProtocol()
    p.send(_send("a"))
    refused = fr.Refused(id="a", problem={"title": "Internal error", "status": 503,
                                          "code": "internal_error"})
    assert p.receive(refused.model_dump_json()) == []
    assert p.in_flight == ["a"]


def test_protocol_delivery_revocation_acks_and_garbage():
    p = SyncProtocol()
    envelope = fr.Envelope(id="e1", group_id=GROUP, sender_device="d_1", kind=fr.Kind.APPLICATION,
                           payload=b"x", sent_at=1.0)
    event = p.receive(fr.Deliver(seq=5, envelope=envelope).model_dump_json())
    assert event == [fr.Deliver(seq=5, envelope=envelope)]
    assert p.receive('{"type": "revoked"}') == [fr.Revoked()] and p.revoked
    acks = [json.loads(t) for t in p.ack(range(2500))]
    assert [len(a["seqs"]) for a in acks] == [1000, 1000, 500]
    assert acks[2]["seqs"][-1] == 2499
    for garbage in ("not json", '{"type": "deliver"}', '{"type": "hello"}', "[", "[]"):
        (violation,) = p.receive(garbage)
        assert isinstance(violation, ProtocolViolation)


def test_frames_ready_together_travel_in_one_message_and_a_bad_one_costs_only_itself():
    p = SyncProtocol()
    texts = [p.send(_send(f"m{i}")) for i in range(3)]
    (message,) = fr.batched(texts)
    assert [f["id"] for f in json.loads(message)] == ["m0", "m1", "m2"]
    assert list(fr.batched(texts[:1])) == texts[:1]  # alone, a frame is not wrapped
    split = list(fr.batched(texts, limit=2 * len(texts[0]) + 3))
    assert split == ["[" + ",".join(texts[:2]) + "]", texts[2]]  # the limit holds, the order too
    events = p.receive('[{"type": "accepted", "id": "m0"}, {"type": "hello"},'
                       ' {"type": "accepted", "id": "m2"}]')
    assert events[0] == fr.Accepted(id="m0") and events[2] == fr.Accepted(id="m2")
    assert isinstance(events[1], ProtocolViolation)
    assert p.in_flight == ["m1"]


def test_backoff_is_exponential_with_full_jitter_and_capped():
    assert [backoff_delay(n, lambda: 1.0) for n in range(8)] == [
        0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(3, lambda: 0.25) == 1.0


# -- Connection against a real relay ----------------------------------------------------------
class Device:
    """An enrolled device with its REST client and, once ``connect``ed, its Connection."""

    def __init__(self, relay, user_id: str) -> None:
        self.relay, self.user_id, self.seed = relay, user_id, os.urandom(32)
        self.api = RelayClient(relay.url, timeout=10)
        self.events: list[fr.Accepted | fr.Refused | fr.Deliver | fr.Revoked] = []
        self.states: list[State] = []
        self.changed = asyncio.Event()
        self.conn: Connection | None = None
        self.device_id = ""

    async def enroll(self) -> Device:
        enrollment = await self.api.enroll(self.relay.invite(self.user_id), "phone", self.seed)
        self.device_id = enrollment.device_id
        await self.api.login(self.device_id, self.seed)
        return self

    async def refresh(self) -> str:
        return (await self.api.login(self.device_id, self.seed)).token

    def connect(self, token: str | None = None, **kwargs) -> Connection:
        self.conn = Connection(self.relay.ws_url, token or self.api.token or "",
                               on_event=self._on_event, on_state=self._on_state, **kwargs)
        self.conn.start()
        return self.conn

    async def _on_event(self, event) -> None:
        self.events.append(event)
        if isinstance(event, fr.Deliver):
            assert self.conn is not None
            await self.conn.ack([event.seq])
        self.changed.set()

    def _on_state(self, state: State) -> None:
        self.states.append(state)
        self.changed.set()

    async def until(self, condition, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    def answered(self, client_id: str) -> fr.Accepted | fr.Refused | None:
        return next((e for e in self.events if isinstance(e, fr.Accepted | fr.Refused)
                     and e.id == client_id), None)

    def delivered(self) -> list[bytes]:
        return [e.envelope.payload for e in self.events if isinstance(e, fr.Deliver)]

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
        await self.api.aclose()


async def _pair(relay) -> tuple[Device, Device, bytes]:
    """Alice (connected) and Bob (not yet) in a group created by Alice's commit."""
    alice = await Device(relay, relay.add_user("Alice Martin")).enroll()
    bob = await Device(relay, relay.add_user("Bob Durand")).enroll()
    group_id = os.urandom(16)
    await alice.api.create_group(group_id)
    alice.connect()
    assert alice.conn is not None
    await alice.conn.send(fr.Commit(id="create", group_id=group_id, epoch=0, payload=b"c0",
                                    add_devices=[bob.device_id]))
    await alice.until(lambda: alice.answered("create") is not None)
    assert alice.answered("create") == fr.Accepted(id="create", epoch=1)
    return alice, bob, group_id


@pytest.mark.asyncio
async def test_send_accepted_then_delivered_and_acked(relay):
    alice, bob, group_id = await _pair(relay)
    try:
        assert alice.conn is not None and alice.conn.state is State.CONNECTED
        await alice.conn.send(fr.Send(id="m1", group_id=group_id, payload=b"hello"))
        await alice.until(lambda: alice.answered("m1") is not None)
        assert isinstance(alice.answered("m1"), fr.Accepted)
        assert alice.conn.protocol.in_flight == []
        bob.connect()
        await bob.until(lambda: b"hello" in bob.delivered())
        # stale epoch: refused with the current epoch, for the sender to re-base
        await alice.conn.send(fr.Commit(id="late", group_id=group_id, epoch=0, payload=b"c"))
        await alice.until(lambda: alice.answered("late") is not None)
        late = alice.answered("late")
        assert isinstance(late, fr.Refused) and late.problem.code is Code.STALE_EPOCH
        assert late.problem.epoch == 1
        # acked: a new connection of Bob's gets nothing again
        assert bob.conn is not None
        await bob.conn.close()
        bob.events.clear()
        bob.connect()
        await bob.until(lambda: State.CONNECTED in bob.states[-1:])
        await asyncio.sleep(0.5)
        assert bob.delivered() == []
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.asyncio
async def test_reconnects_after_relay_restart_and_resends_in_flight_once(relay):
    alice, bob, group_id = await _pair(relay)
    try:
        assert alice.conn is not None
        await alice.conn.send(fr.Send(id="before", group_id=group_id, payload=b"before"))
        await asyncio.to_thread(relay.stop)  # its answer may or may not have arrived
        await alice.until(lambda: alice.conn.state is State.RECONNECTING)
        await alice.conn.send(fr.Send(id="during", group_id=group_id, payload=b"during"))
        assert "during" in alice.conn.protocol.in_flight
        await asyncio.to_thread(relay.start)  # same port
        await alice.until(lambda: all(alice.answered(i) for i in ("before", "during")))
        assert all(isinstance(alice.answered(i), fr.Accepted) for i in ("before", "during"))
        assert alice.conn.state is State.CONNECTED and alice.conn.protocol.in_flight == []
        bob.connect()
        await bob.until(lambda: len(bob.delivered()) >= 2)
        await asyncio.sleep(0.5)
        assert sorted(bob.delivered()) == [b"before", b"during"]  # each exactly once
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.asyncio
async def test_backoff_schedule_with_injected_random_and_sleep():
    delays: list[float] = []
    enough = asyncio.Event()

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 8:
            enough.set()
        await asyncio.sleep(0)

    states: list[State] = []

    async def on_event(event) -> None:
        raise AssertionError(f"no relay, no event: {event}")

    conn = Connection(f"ws://127.0.0.1:{free_port()}/v1/ws", "token", on_event=on_event,
                      on_state=states.append, random=lambda: 0.5, sleep=sleep)
    conn.start()
    async with asyncio.timeout(10):
        await enough.wait()
    await conn.close()
    assert delays[:8] == [0.25, 0.5, 1, 2, 4, 8, 15, 15]
    assert states[0] is State.CONNECTING and states[1] is State.RECONNECTING
    assert conn.state is State.OFFLINE and states[-1] is State.OFFLINE


@pytest.mark.asyncio
async def test_stale_token_is_refreshed_once_then_gives_up(relay):
    dev = await Device(relay, relay.add_user("Claire Petit")).enroll()
    try:
        dev.connect(token="stale", refresh_token=dev.refresh)
        await dev.until(lambda: dev.states[-1:] == [State.CONNECTED])
        assert dev.conn is not None and dev.conn.state is State.CONNECTED
        await dev.conn.close()

        async def useless() -> str:
            return "still-stale"

        sleeps: list[float] = []

        async def sleep(delay: float) -> None:
            sleeps.append(delay)

        dev.states.clear()
        dev.connect(token="stale", refresh_token=useless, sleep=sleep)
        await dev.until(lambda: State.UNAUTHENTICATED in dev.states)
        assert sleeps == []
    finally:
        await dev.close()


@pytest.mark.asyncio
async def test_revoked_device_stops_reconnecting(relay):
    alice, bob, _ = await _pair(relay)
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    try:
        bob.connect(sleep=sleep, refresh_token=bob.refresh)
        await bob.until(lambda: State.CONNECTED in bob.states)
        await bob.api.revoke_device(bob.device_id)  # e.g. signing out: cut off at once
        await bob.until(lambda: State.REVOKED in bob.states)
        assert fr.Revoked() in bob.events and sleeps == []
        assert bob.conn is not None
        await bob.conn.close()
        assert bob.conn.state is State.REVOKED
        with pytest.raises(RelayError) as e:  # its token is dead as well
            await bob.api.me()
        assert e.value.code is Code.DEVICE_REVOKED
    finally:
        await alice.close()
        await bob.close()
