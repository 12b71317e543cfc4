"""End-to-end benchmark: real engines (MLS, SQLCipher cache, outbox) and a real relay process,
all on loopback on this machine.

Figures, each on a line of its own as ``figure: NAME = VALUE UNIT``:
- latency from ``send_text`` on one device to the message being stored on another (the
  moment its MessageReceived event fires), one message at a time: p50 and p99;
- throughput with 8 messages in flight between two devices, received and stored per second;
- fan-out: time from ``send_text`` until all 50 members of a room have stored the message
  (p50 over several messages). The 50 engines share this one process and its two cores
  with the relay, so their work is serialised here where 50 phones would work in parallel;
- history: time for a newly linked device to receive and store a 5,000-message history, from
  the approval's archive being available (the device started and in its rooms) to the history
  stored; and the whole link, from ``Engine.link`` to the history stored. The approving
  device's history is written into its cache directly (as delivery would have stored it), so
  that the stage does not spend its time sending 5,000 messages.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.client.engine import Engine
from app.client.events import Event, MessageReceived
from relay import totp
from storage.custody import MemoryCustody
from storage.history import HistoryEntry, HistoryStore
from storage.messages import MessageRef, NewMessage
from storage.rooms import RoomKind
from tests.relay_harness import RelayProcess, running_relay


def figure(name: str, value: float, unit: str) -> None:
    print(f"figure: {name} = {value:.2f} {unit}", flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Arrivals:
    """When each message (by client id) was stored on each device."""

    def __init__(self) -> None:
        self.stored: dict[str, int] = {}
        self.done: dict[str, asyncio.Event] = {}
        self.expected = 1

    def watch(self, engine: Engine) -> None:
        engine.subscribe(self._on_event)

    def expect(self, client_id: str) -> asyncio.Event:
        return self.done.setdefault(client_id, asyncio.Event())

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, MessageReceived):
            return
        client_id = event.message.ref.client_id
        count = self.stored[client_id] = self.stored.get(client_id, 0) + 1
        if count >= self.expected:
            self.expect(client_id).set()


async def enrolled(relay: RelayProcess, root: Path, names: list[str]) -> list[Engine]:
    custody = MemoryCustody()
    engines = []
    for name in names:
        user_id = relay.add_user(name)
        engine = await Engine.enroll(root / name, relay.url, relay.invite(user_id), custody)
        await engine.start()
        engines.append(engine)
    return engines


async def joined(members: list[Engine], room_id: str) -> None:
    async with asyncio.timeout(120):
        while not all(m._store.rooms.get(room_id) for m in members):
            await asyncio.sleep(0.05)


async def one_at_a_time(sender: Engine, room_id: str, arrivals: Arrivals, n: int) -> list[float]:
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        ref = await sender.send_text(room_id, f"bench {i}")
        await asyncio.wait_for(arrivals.expect(ref.client_id).wait(), 30)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def pipelined(
    sender: Engine, room_id: str, arrivals: Arrivals, n: int, in_flight: int
) -> float:
    """``in_flight`` writers (a ward's staff typing at once, a script) each send their next
    message as soon as their last one is stored on the other device."""
    counter = iter(range(n))

    async def writer() -> None:
        for i in counter:
            ref = await sender.send_text(room_id, f"pipelined {i}")
            await asyncio.wait_for(arrivals.expect(ref.client_id).wait(), 60)

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(in_flight)))
    return n / (time.perf_counter() - started)


async def pair_figures(relay: RelayProcess, root: Path, messages: int) -> None:
    alice, bob = await enrolled(relay, root, ["alice", "bob"])
    try:
        room_id = await alice.create_room(RoomKind.DIRECT, "bench", [bob.user_id])
        await joined([bob], room_id)
        arrivals = Arrivals()
        arrivals.watch(bob)
        await one_at_a_time(alice, room_id, arrivals, 20)  # warm-up
        latencies = await one_at_a_time(alice, room_id, arrivals, messages)
        figure("e2e_latency_p50", statistics.median(latencies), "ms")
        figure("e2e_latency_p99", percentile(latencies, 0.99), "ms")
        rate = await pipelined(alice, room_id, arrivals, messages * 4, in_flight=8)
        figure("e2e_throughput_8_in_flight", rate, "msg/s")
    finally:
        await asyncio.gather(alice.stop(), bob.stop())


async def fan_out_figures(relay: RelayProcess, root: Path, members: int, rounds: int) -> None:
    engines = await enrolled(relay, root, [f"m{i}" for i in range(members)])
    sender, others = engines[0], engines[1:]
    try:
        started = time.perf_counter()
        room_id = await sender.create_room(
            RoomKind.SERVICE, "bench", [e.user_id for e in others]
        )
        await joined(others, room_id)
        figure(f"room_of_{members}_created_and_joined", time.perf_counter() - started, "s")
        arrivals = Arrivals()
        arrivals.expected = len(others)
        for engine in others:
            arrivals.watch(engine)
        timings = []
        for i in range(rounds):
            started = time.perf_counter()
            ref = await sender.send_text(room_id, f"fan-out {i}")
            await asyncio.wait_for(arrivals.expect(ref.client_id).wait(), 60)
            timings.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.2)  # let the delivered receipts settle between rounds
        figure(f"fan_out_{members}_p50", statistics.median(timings[1:]), "ms")
        figure(f"fan_out_{members}_max", max(timings[1:]), "ms")
    finally:
        await asyncio.gather(*(e.stop() for e in engines))


def _totp(engine: Engine) -> str:
    assert engine.totp_uri is not None  # shown at the user's first enrolment
    return totp.code_at(totp.b32_secret(engine.totp_uri), int(time.time() // totp.STEP))


def _history(engine: Engine, room_id: str, messages: int) -> None:
    """``messages`` received messages of the room, stored as delivery stores them."""
    now = time.time()
    HistoryStore(engine._store.db).import_([
        HistoryEntry(message=NewMessage(
            ref=MessageRef(f"device-{i % 7}", f"history-{i}"), room_id=room_id,
            sender_user=f"colleague-{i % 7}", body=f"history message {i}: dose adjusted",
            local_ts=now - messages + i, server_ts=now - messages + i,
        ))
        for i in range(messages)
    ])


async def history_figures(relay: RelayProcess, root: Path, messages: int) -> None:
    (alice,) = await enrolled(relay, root, ["alice"])
    linked: Engine | None = None
    try:
        room_id = await alice.create_room(RoomKind.GROUP, "bench history", [])
        _history(alice, room_id, messages)
        started = time.perf_counter()
        request = await Engine.link(root / "alice2", relay.url, MemoryCustody(),
                                    device_name="bench")
        linked, _ = await asyncio.gather(
            request.complete(timeout=60), alice.approve_link(request.code, _totp(alice)))
        await linked.start()
        await joined([linked], room_id)
        available = time.perf_counter()
        stored = await linked.receive_history(request, timeout=60)
        done = time.perf_counter()
        if stored != messages:
            raise RuntimeError(f"the linked device stored {stored} of {messages} messages")
        figure(f"history_{messages}_stored", (done - available) * 1000, "ms")
        figure("link_with_history_total", done - started, "s")
    finally:
        await asyncio.gather(alice.stop(), *([] if linked is None else [linked.stop()]))


async def run(args: argparse.Namespace) -> None:
    stages: list[tuple[str, Callable[[RelayProcess, Path], object]]] = [
        ("pair", lambda relay, root: pair_figures(relay, root, args.messages)),
        ("fan-out", lambda relay, root: fan_out_figures(relay, root, args.members, args.rounds)),
        ("history", lambda relay, root: history_figures(relay, root, args.history)),
    ]
    stages = [s for s in stages if args.stage is None or s[0] in args.stage]
    for name, stage in stages:
        with tempfile.TemporaryDirectory(prefix=f"liaison-e2e-{name}-") as tmp:
            root = Path(tmp)
            with running_relay(root) as relay:
                await stage(relay, root / "devices")  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--history", type=int, default=5000)
    parser.add_argument("--stage", action="append", choices=["pair", "fan-out", "history"],
                        help="run only this stage (repeatable); all by default")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
