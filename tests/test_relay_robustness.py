"""The relay under abuse, as a real process: malformed and oversized frames, oversized
bodies, strangers to a group, a client that stops reading (and a burst that is not one),
expiry of undelivered messages, unauthenticated sockets.

Token expiry is not covered here: ``token_ttl_seconds`` is at least 60, too long for the suite.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from protocol.encoding import b64encode
from tests.relay_harness import Device, RelayProcess, make_group, new_device, running_relay

FRAME_LIMIT = 64 * 1024  # the smallest max_frame_bytes and max_body_bytes relay.json allows
BODY_LIMIT = 64 * 1024
QUEUE_LIMIT = 100  # the smallest send_queue_limit
TTL_DAYS = 0.00005  # 4.32 s
MAINTENANCE_PERIOD = 10.0  # the relay expires messages every ten maintenance ticks of ~1 s


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    with running_relay(Path(tmp_path_factory.mktemp("robust")), max_frame_bytes=FRAME_LIMIT,
                       max_body_bytes=BODY_LIMIT, send_queue_limit=QUEUE_LIMIT) as r:
        yield r


async def closed_with(ws: Any, timeout: float = 10.0) -> tuple[int, str]:
    """Read (and discard) frames until the relay closes the socket: its code and reason."""

    async def drain() -> tuple[int, str]:
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed as e:
            assert e.rcvd is not None, "closed without a close frame"
            return e.rcvd.code, e.rcvd.reason

    return await asyncio.wait_for(drain(), timeout)


def send(frame_id: str, gid: str, payload: bytes = b"ciphertext") -> dict[str, Any]:
    return {"type": "send", "id": frame_id, "group_id": gid, "payload": b64encode(payload)}


def deliveries(dev: Device) -> list[str]:
    return [f["envelope"]["id"] for f in dev.received
            if f["type"] == "deliver" and f["envelope"]["kind"] == "application"]


def test_malformed_frames_are_refused_and_the_connection_stays_usable(
        relay: RelayProcess) -> None:
    async def scenario() -> None:
        dev = new_device(relay)
        await dev.connect()
        gid = await make_group(dev, [])
        malformed: list[str | bytes] = [
            "{not json",
            json.dumps({"type": "shout", "id": "a1", "group_id": gid}),
            json.dumps({**send("a2", gid), "payload": "not*base64!"}),
            json.dumps({"type": "send", "id": "a3", "group_id": gid}),
            json.dumps({"type": "commit", "id": "a4", "group_id": gid, "payload": "AA"}),
            b"\x00\x01binary",
        ]
        for raw in malformed:
            await dev.ws.send(raw)
            frame = await dev.next_frame()
            assert frame["type"] == "refused" and frame["id"] == "?", (raw, frame)
            assert frame["problem"]["code"] == "validation_failed", (raw, frame)
            assert frame["problem"]["status"] == 422, (raw, frame)
        await dev.send_frame(send("ok", gid))
        answer = await dev.next_frame()
        assert (answer["type"], answer["id"]) == ("accepted", "ok")
        await dev.close()

    asyncio.run(scenario())


def test_oversized_frame_closes_that_connection_only(relay: RelayProcess) -> None:
    async def scenario() -> None:
        big, other = new_device(relay), new_device(relay)
        await big.connect()
        await other.connect()
        gid = await make_group(other, [big])
        await big.ws.send(json.dumps(send("huge", gid, os.urandom(FRAME_LIMIT))))
        assert (await closed_with(big.ws))[0] == 1009
        # the relay keeps serving: the other device's socket, and a new one for this device
        await other.send_frame(send("after", gid))
        await other.pump(lambda d: "after" in d.answers)
        assert other.answers["after"]["type"] == "accepted"
        await big.connect()
        await big.pump(lambda d: "after" in deliveries(d))
        await big.send_frame(send("small", gid))
        await big.pump(lambda d: "small" in d.answers)
        assert big.answers["small"]["type"] == "accepted"
        # the oversized frame was never stored: delivered in order, only "small" came
        await other.pump(lambda d: "small" in deliveries(d))
        assert deliveries(other) == ["small"] and "huge" not in big.answers
        for d in (big, other):
            await d.close()

    asyncio.run(scenario())


def test_oversized_rest_body_is_refused_with_413(relay: RelayProcess) -> None:
    dev = new_device(relay)
    body = json.dumps({"group_id": "A" * BODY_LIMIT}).encode()
    piece = 8 * 1024
    with dev.http() as c:
        declared = c.post("/v1/groups", content=body,
                          headers={"content-type": "application/json"})
        streamed = c.post("/v1/groups", content=iter(
            [body[i:i + piece] for i in range(0, len(body), piece)]),
            headers={"content-type": "application/json"})
        assert "content-length" not in streamed.request.headers
        assert streamed.request.headers["transfer-encoding"] == "chunked"
        # a body within the limit still works on the same relay
        ok = c.post("/v1/groups", json={"group_id": b64encode(b"small group")})
    for r in (declared, streamed):
        assert r.status_code == 413, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "too_large"
        assert r.json()["status"] == 413
    assert ok.status_code == 201, ok.text


def test_sending_to_a_group_of_others_is_refused(relay: RelayProcess) -> None:
    async def scenario() -> None:
        owner, stranger = new_device(relay), new_device(relay)
        await owner.connect()
        await stranger.connect()
        gid = await make_group(owner, [])
        await stranger.send_frame(send("intrude", gid))
        await stranger.send_frame({"type": "commit", "id": "take-over", "group_id": gid,
                                   "epoch": 0, "payload": b64encode(b"commit")})
        await stranger.pump(lambda d: {"intrude", "take-over"} <= d.answers.keys())
        for fid in ("intrude", "take-over"):
            answer = stranger.answers[fid]
            assert answer["type"] == "refused", answer
            assert answer["problem"]["code"] == "not_a_member", answer
            assert answer["problem"]["status"] == 403, answer
        # nothing reached the group, and its epoch did not move
        await owner.send_frame(send("mine", gid))
        await owner.pump(lambda d: "mine" in d.answers)
        assert owner.received == []
        with owner.http() as c:
            assert c.get(f"/v1/groups/{gid}").json()["epoch"] == 0
        for d in (owner, stranger):
            await d.close()

    asyncio.run(scenario())


def test_a_client_that_stops_reading_is_dropped_and_loses_nothing(
        relay: RelayProcess) -> None:
    # ~22 MB of frames (random payloads: permessage-deflate must not shrink them), far past
    # what the socket buffers and a queue of 100 frames hold
    payloads = [os.urandom(40 * 1024) for _ in range(400)]
    ids = [f"m{i}" for i in range(len(payloads))]

    async def scenario() -> None:
        sender, slow = new_device(relay), new_device(relay)
        await sender.connect()
        await slow.connect()
        gid = await make_group(sender, [slow])
        # ``slow`` never reads: its client stops taking data once 16 frames wait unread
        for i, (fid, payload) in enumerate(zip(ids, payloads, strict=True)):
            if i >= 8:  # at most 8 in flight, as a client's outbox sends
                await sender.pump(lambda d, i=i: ids[i - 8] in d.answers)
            await sender.send_frame(send(fid, gid, payload))
        await sender.pump(lambda d: set(ids) <= d.answers.keys())
        assert all(sender.answers[fid]["type"] == "accepted" for fid in ids)
        # reading now: what the buffers held, then the relay's close
        assert await closed_with(slow.ws, timeout=30) == (4008, "too slow")
        slow.ws = None
        await slow.connect()
        await slow.pump(lambda d: len(deliveries(d)) == len(ids), timeout=60)
        assert deliveries(slow) == ids  # every message, in order, none twice
        seqs = [f["seq"] for f in slow.received if f["type"] == "deliver"]
        assert seqs == sorted(set(seqs))
        assert [f["envelope"]["payload"] for f in slow.received
                if f["type"] == "deliver" and f["envelope"]["kind"] == "application"] == \
            [b64encode(p) for p in payloads]
        for d in (sender, slow):
            await d.close()

    asyncio.run(scenario())


def test_a_burst_past_the_queue_limit_does_not_drop_a_prompt_reader(
        relay: RelayProcess) -> None:
    """Pipelined sends commit in one writer batch: hundreds of frames queued at once for the
    reader (deliveries) and the sender (answers), both of which keep reading."""
    ids = [f"b{i}" for i in range(3 * QUEUE_LIMIT)]

    async def scenario() -> None:
        sender, reader = new_device(relay), new_device(relay)
        await sender.connect()
        await reader.connect()
        gid = await make_group(sender, [reader])
        answered = asyncio.create_task(sender.pump(lambda d: set(ids) <= d.answers.keys()))
        delivered = asyncio.create_task(reader.pump(lambda d: len(deliveries(d)) == len(ids)))
        for fid in ids:
            await sender.send_frame(send(fid, gid))
        await asyncio.gather(answered, delivered)
        assert all(sender.answers[fid]["type"] == "accepted" for fid in ids)
        assert deliveries(reader) == ids
        for d in (sender, reader):
            await d.close()

    asyncio.run(scenario())


def test_unauthenticated_websocket_is_closed_with_4001(relay: RelayProcess) -> None:
    async def scenario() -> None:
        for headers in ({}, {"authorization": "Bearer not-a-token"}):
            async with websockets.connect(relay.ws_url, additional_headers=headers) as ws:
                assert await closed_with(ws) == (4001, "unauthenticated")

    asyncio.run(scenario())


def test_expired_undelivered_messages_are_dropped(tmp_path: Path) -> None:
    async def scenario(relay: RelayProcess) -> None:
        sender, online, offline = (new_device(relay) for _ in range(3))
        for d in (sender, online, offline):
            await d.connect()
        gid = await make_group(sender, [online, offline])
        await offline.pump(lambda d: len(d.received) == 1)  # the Welcome, acknowledged
        await offline.ack_all()
        await asyncio.sleep(0.3)
        await offline.close()
        for fid in ("e1", "e2", "e3"):
            await sender.send_frame(send(fid, gid))
        await sender.pump(lambda d: {"e1", "e2", "e3"} <= d.answers.keys())
        sent = time.monotonic()
        assert all(sender.answers[f]["type"] == "accepted" for f in ("e1", "e2", "e3"))
        await online.pump(lambda d: deliveries(d) == ["e1", "e2", "e3"])
        # past the TTL and one full maintenance period after it
        await asyncio.sleep(TTL_DAYS * 86_400 + MAINTENANCE_PERIOD + 1.5
                            - (time.monotonic() - sent))
        offline.received.clear()
        await offline.connect()
        with pytest.raises(AssertionError, match="timed out"):
            await offline.pump(lambda d: len(d.received) > 0, timeout=1.5)
        for d in (sender, online, offline):
            await d.close()

    with running_relay(tmp_path, message_ttl_days=TTL_DAYS) as relay:
        asyncio.run(scenario(relay))
