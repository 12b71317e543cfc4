"""End-to-end benchmark: real engines (MLS, SQLCipher cache, outbox) and a real relay process,
all on loopback on this machine.

Every device other than the one that sends runs in a worker process of its own kind, as a
phone is a device of its own: its work does not queue behind the sender's on one event loop.
The fan-out's 49 receiving members are spread over as many worker processes as the machine has
cores (``--processes``); they still share those cores, where 49 phones would each have their
own. ``--members-in-process`` puts every device back in the bench's own process (the
arrangement of the figures before this one). Times come from CLOCK_MONOTONIC, which every
process of the machine shares: a worker stamps a message when its MessageReceived event fires.

Figures, each on a line of its own as ``figure: NAME = VALUE UNIT``:
- latency from ``send_text`` on one device to the message being stored on another (the
  moment its MessageReceived event fires), one message at a time: p50 and p99;
- throughput with 8 messages in flight between two devices, received and stored per second
  (the median of three rounds, each printed too): 8 writers, each sending its next message
  once its last one is stored on the other device (``e2e_throughput_8_in_flight``); then in
  flight as Kafka and MQTT count it, at most 8 messages sent and not yet accepted by the relay,
  until the last one is stored on the other device (``e2e_throughput_window_8``);
- fan-out: time from ``send_text`` until all 50 members of a room have stored the message
  (p50 over several messages);
- history: time for a newly linked device to receive and store a 5,000-message history, from
  the approval's archive being available (the device started and in its rooms) to the history
  stored; and the whole link, from ``Engine.link`` to the history stored. The approving
  device's history is written into its cache directly (as delivery would have stored it), so
  that the stage does not spend its time sending 5,000 messages.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.client.engine import Engine
from app.client.events import Event, MessageReceived, MessageSent, RoomChanged
from relay import totp
from storage.custody import MemoryCustody
from storage.history import HistoryEntry, HistoryStore
from storage.messages import MessageRef, NewMessage
from storage.rooms import RoomKind
from tests.relay_harness import RelayProcess, running_relay


def figure(name: str, value: float, unit: str) -> None:
    print(f"figure: {name} = {value:.2f} {unit}", flush=True)


PROC = Path("/proc/self/stat")


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far, all its threads (Linux's /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU time each process (the sender, the receivers' workers, the relay) spends during a
    stretch of the bench: whether throughput is bound by the machine's cores or by the chain
    from sender to relay to receiver and back, which waits on every step in turn."""

    def __init__(self, processes: dict[str, list[int]]) -> None:
        self._processes = processes
        self._start = self._now()
        self._wall = time.perf_counter()

    def _now(self) -> dict[str, float]:
        return {name: sum(_cpu_seconds(pid) for pid in pids)
                for name, pids in self._processes.items()}

    def report(self, prefix: str, messages: int) -> None:
        wall = time.perf_counter() - self._wall
        used = {name: cpu - self._start[name] for name, cpu in self._now().items()}
        for name, cpu in used.items():
            figure(f"{prefix}_cpu_{name}", cpu / messages * 1000, "ms/msg")
        total = sum(used.values())
        figure(f"{prefix}_cpu_total", total / messages * 1000, "ms/msg")
        figure(f"{prefix}_cores_busy", total / wall, "cores")
        # the rate at which this CPU cost would keep every core of the machine busy: no
        # overlap of the chain's steps could send faster on this machine
        figure(f"{prefix}_cpu_bound", (os.cpu_count() or 1) * messages / total, "msg/s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Arrivals:
    """When each message (by client id) was stored on each device, as the devices report it."""

    def __init__(self) -> None:
        self.stored: dict[str, int] = {}
        self.last_stored_at: dict[str, float] = {}
        self.done: dict[str, asyncio.Event] = {}
        self.expected = 1

    def watch(self, engine: Engine) -> None:
        engine.subscribe(self._on_event)

    def expect(self, client_id: str) -> asyncio.Event:
        return self.done.setdefault(client_id, asyncio.Event())

    def record(self, client_id: str, at: float) -> None:
        count = self.stored[client_id] = self.stored.get(client_id, 0) + 1
        self.last_stored_at[client_id] = max(at, self.last_stored_at.get(client_id, at))
        if count >= self.expected:
            self.expect(client_id).set()

    async def wait(self, client_id: str, started: float, timeout: float) -> float:
        """Milliseconds from ``started`` until every expected device stored the message."""
        async with asyncio.timeout(timeout):
            await self.expect(client_id).wait()
        return (self.last_stored_at[client_id] - started) * 1000

    def _on_event(self, event: Event) -> None:
        if isinstance(event, MessageReceived):
            self.record(event.message.ref.client_id, time.perf_counter())


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


def _worker(relay_url: str, root: str, invites: list[tuple[str, str]], conn: Connection) -> None:
    try:
        asyncio.run(_devices(relay_url, Path(root), invites, conn))
    except Exception as e:
        conn.send([("failed", repr(e), 0.0)])
        raise


async def _devices(relay_url: str, root: Path, invites: list[tuple[str, str]],
                   conn: Connection) -> None:
    """A worker process's devices: enrol, report every room joined and message stored (with
    the time it was stored), until told to stop."""
    custody = MemoryCustody()
    engines = []
    for name, code in invites:
        engine = await Engine.enroll(root / name, relay_url, code, custody)
        await engine.start()
        engines.append(engine)

    reports: list[tuple[str, str, float]] = []

    def send_reports() -> None:
        conn.send(reports.copy())
        reports.clear()

    def report(engine: Engine, event: Event) -> None:
        """Reports go to the bench in one batch per turn of the event loop: the bench's own
        process is the sending device, whose time they would otherwise take."""
        if not reports:
            asyncio.get_running_loop().call_soon(send_reports)
        if isinstance(event, MessageReceived):
            reports.append(("stored", event.message.ref.client_id, time.perf_counter()))
        elif isinstance(event, RoomChanged) and event.active:
            reports.append(("room", f"{event.room.id} {engine.user_id}", 0.0))

    for engine in engines:
        engine.subscribe(functools.partial(report, engine))
    conn.send([("ready", " ".join(e.user_id for e in engines), 0.0)])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(conn.fileno(), stop.set)
    await stop.wait()
    await asyncio.gather(*(e.stop() for e in engines))


class RemoteDevices:
    """Devices enrolled and run by worker processes, reporting to ``arrivals``."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self.user_ids: list[str] = []
        self._in_rooms: set[str] = set()  # "room_id user_id"
        self._workers: list[tuple[BaseProcess, Connection]] = []

    async def start(self, relay: RelayProcess, root: Path, names: list[str],
                    processes: int) -> list[str]:
        invites = [(name, relay.invite(relay.add_user(name))) for name in names]
        context = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        ready = [loop.create_future() for _ in range(processes)]
        for i in range(processes):
            ours, theirs = context.Pipe()
            process = context.Process(target=_worker, daemon=True,
                                      args=(relay.url, str(root), invites[i::processes], theirs))
            process.start()
            loop.add_reader(ours.fileno(), self._read, ours, ready[i])
            self._workers.append((process, ours))
        for users in await asyncio.wait_for(asyncio.gather(*ready), 300):
            self.user_ids += users.split()
        return self.user_ids

    def pids(self) -> list[int]:
        return [process.pid for process, _ in self._workers if process.pid is not None]

    def _read(self, conn: Connection, ready: asyncio.Future[str]) -> None:
        while conn.poll():
            for kind, value, at in conn.recv():
                if kind == "stored":
                    self.arrivals.record(value, at)
                elif kind == "room":
                    self._in_rooms.add(value)
                elif kind == "ready":
                    ready.set_result(value)
                elif not ready.done():
                    ready.set_exception(RuntimeError(f"a worker process failed: {value}"))

    async def joined(self, room_id: str) -> None:
        async with asyncio.timeout(120):
            while not all(f"{room_id} {u}" in self._in_rooms for u in self.user_ids):
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for _, conn in self._workers:
            loop.remove_reader(conn.fileno())
            conn.send("stop")
        for process, _ in self._workers:
            await asyncio.to_thread(process.join, 60)


class Members:
    """The devices that receive: in worker processes, or (``in_process``) in this one."""

    def __init__(self, in_process: bool, processes: int) -> None:
        self.arrivals = Arrivals()
        self._local: list[Engine] = []
        self._remote = None if in_process else RemoteDevices(self.arrivals)
        self._processes = processes

    async def start(self, relay: RelayProcess, root: Path, names: list[str]) -> list[str]:
        if self._remote is not None:
            return await self._remote.start(relay, root, names,
                                            min(self._processes, len(names)))
        self._local = await enrolled(relay, root, names)
        for engine in self._local:
            self.arrivals.watch(engine)
        return [e.user_id for e in self._local]

    async def joined(self, room_id: str) -> None:
        if self._remote is not None:
            await self._remote.joined(room_id)
        else:
            await joined(self._local, room_id)

    def pids(self) -> list[int]:
        """The receivers' worker processes (none when they run in this one)."""
        return [] if self._remote is None else self._remote.pids()

    async def stop(self) -> None:
        if self._remote is not None:
            await self._remote.stop()
        await asyncio.gather(*(e.stop() for e in self._local))


async def one_at_a_time(sender: Engine, room_id: str, arrivals: Arrivals, n: int) -> list[float]:
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        ref = await sender.send_text(room_id, f"bench {i}")
        latencies.append(await arrivals.wait(ref.client_id, started, 30))
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
            await arrivals.expect(ref.client_id).wait()

    started = time.perf_counter()
    async with asyncio.timeout(60 + n / 100):  # one deadline: a timer per message costs more
        await asyncio.gather(*(writer() for _ in range(in_flight)))
    return n / (time.perf_counter() - started)


async def windowed(
    sender: Engine, room_id: str, arrivals: Arrivals, n: int, in_flight: int
) -> float:
    """In flight as Kafka and MQTT count it: at most ``in_flight`` messages sent and not yet
    accepted by the relay. The rate runs until the last one is stored on the other device, so
    a receiver slower than the sender bounds it too."""
    window = asyncio.Semaphore(in_flight)
    waiting: set[str] = set()  # sent, not yet accepted
    accepted_early: set[str] = set()  # accepted before its send_text returned

    def on_event(event: Event) -> None:
        if isinstance(event, MessageSent):
            client_id = event.message_ref.client_id
            if client_id in waiting:
                waiting.discard(client_id)
                window.release()
            else:
                accepted_early.add(client_id)

    counter = iter(range(n))
    sent: list[str] = []

    async def writer() -> None:
        for i in counter:
            await window.acquire()
            client_id = (await sender.send_text(room_id, f"windowed {i}")).client_id
            sent.append(client_id)
            if client_id in accepted_early:
                window.release()
            else:
                waiting.add(client_id)

    unsubscribe = sender.subscribe(on_event)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(60 + n / 100):
            await asyncio.gather(*(writer() for _ in range(in_flight)))
            for client_id in sent:
                await arrivals.expect(client_id).wait()
    finally:
        unsubscribe()
    return n / (max(arrivals.last_stored_at[c] for c in sent) - started)


async def pair_figures(relay: RelayProcess, root: Path, messages: int, members: Members) -> None:
    (alice,) = await enrolled(relay, root, ["alice"])
    try:
        (bob,) = await members.start(relay, root, ["bob"])
        room_id = await alice.create_room(RoomKind.DIRECT, "bench", [bob])
        await members.joined(room_id)
        await one_at_a_time(alice, room_id, members.arrivals, 20)  # warm-up
        latencies = await one_at_a_time(alice, room_id, members.arrivals, messages)
        figure("e2e_latency_p50", statistics.median(latencies), "ms")
        figure("e2e_latency_p99", percentile(latencies, 0.99), "ms")
        # This machine's speed drifts by ±10% within minutes: the median of three rounds
        assert relay.proc is not None
        receivers = members.pids()
        cpu = CpuMeter({"sender": [os.getpid()], "relay": [relay.proc.pid]}
                       | ({"receiver": receivers} if receivers else {})) if PROC.exists() else None
        rates = [await pipelined(alice, room_id, members.arrivals, messages * 4, in_flight=8)
                 for _ in range(3)]
        for i, rate in enumerate(rates, 1):
            figure(f"e2e_throughput_8_in_flight_round_{i}", rate, "msg/s")
        figure("e2e_throughput_8_in_flight", statistics.median(rates), "msg/s")
        if cpu is not None:  # Linux's /proc only
            cpu.report("e2e_throughput", messages * 4 * len(rates))
        rates = [await windowed(alice, room_id, members.arrivals, messages * 4, in_flight=8)
                 for _ in range(3)]
        for i, rate in enumerate(rates, 1):
            figure(f"e2e_throughput_window_8_round_{i}", rate, "msg/s")
        figure("e2e_throughput_window_8", statistics.median(rates), "msg/s")
    finally:
        await asyncio.gather(alice.stop(), members.stop())


async def fan_out_figures(relay: RelayProcess, root: Path, size: int, rounds: int,
                          members: Members) -> None:
    (sender,) = await enrolled(relay, root, ["m0"])
    try:
        others = await members.start(relay, root, [f"m{i}" for i in range(1, size)])
        started = time.perf_counter()
        room_id = await sender.create_room(RoomKind.SERVICE, "bench", others)
        await members.joined(room_id)
        figure(f"room_of_{size}_created_and_joined", time.perf_counter() - started, "s")
        members.arrivals.expected = len(others)
        timings = []
        for i in range(rounds):
            started = time.perf_counter()
            ref = await sender.send_text(room_id, f"fan-out {i}")
            timings.append(await members.arrivals.wait(ref.client_id, started, 60))
            await asyncio.sleep(0.2)  # let the acknowledgements settle between rounds
        figure(f"fan_out_{size}_p50", statistics.median(timings[1:]), "ms")
        figure(f"fan_out_{size}_max", max(timings[1:]), "ms")
    finally:
        await asyncio.gather(sender.stop(), members.stop())


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
        ("pair", lambda relay, root: pair_figures(relay, root, args.messages, members())),
        ("fan-out", lambda relay, root: fan_out_figures(relay, root, args.members, args.rounds,
                                                        members())),
        ("history", lambda relay, root: history_figures(relay, root, args.history)),
    ]
    def members() -> Members:
        return Members(args.members_in_process, args.processes)

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
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="worker processes for the fan-out's receiving members")
    parser.add_argument("--members-in-process", action="store_true",
                        help="run every device in this process, one event loop for all")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
