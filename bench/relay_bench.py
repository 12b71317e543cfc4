"""Relay benchmark: N devices on loopback, in pairs (direct conversations), against a real
relay process.

Phase 1 (throughput): every device keeps 8 messages in flight; figures are messages
accepted (stored durably, then acknowledged to the sender) and delivered per second.
Phase 2 (latency): a fixed total rate (default 500 messages/s); delivery latency is from
the sender's send to the recipient's receipt, p50 and p99.

Every figure is printed as ``figure: NAME = VALUE UNIT`` on a line of its own. The client
devices run in this one Python process, on the same two cores as the relay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crypto.primitives import ed25519_public, ed25519_sign
from protocol.auth import enroll_proof_message, login_message
from protocol.encoding import b64decode, b64encode
from protocol.rest import Profession, User
from relay import admin
from relay.config import DataDir
from relay.ids import new_id

BIN = Path(sys.executable).parent / "liaison-relay"
PASS = "benchmark passphrase"
PAYLOAD = os.urandom(300)  # about the size of an encrypted short message


def figure(name: str, value: float, unit: str) -> None:
    print(f"figure: {name} = {value:.1f} {unit}", flush=True)


async def provision(data: DataDir, n: int) -> list[str]:
    """n users with one invite each, in one admin transaction."""
    async with admin.admin_tx(data) as tx:
        codes = []
        for i in range(n):
            uid = await admin.save_user(tx, User(id=new_id("u_"), display_name=f"Bench {i}",
                                                 profession=Profession.NURSE))
            codes.append(await admin.insert_invite(tx, uid, 3600))
    return codes


class Dev:
    def __init__(self, url: str) -> None:
        self.url = url
        self.seed = os.urandom(32)
        self.device_id = ""
        self.token = ""
        self.ws = None
        self.peer: Dev | None = None
        self.group = ""
        self.accepted = 0
        self.delivered = 0
        self.latencies: list[float] = []
        self.inflight = 0
        self.slot = asyncio.Event()
        self.pending_acks: list[int] = []

    async def enroll(self, http: httpx.AsyncClient, code: str) -> None:
        pub = ed25519_public(self.seed)
        r = await http.post("/v1/enroll", json={
            "invite_code": code, "device_name": "bench", "signature_key": b64encode(pub),
            "proof": b64encode(ed25519_sign(self.seed, enroll_proof_message(code, pub)))})
        r.raise_for_status()
        self.device_id = r.json()["device_id"]
        ch = b64decode((await http.post("/v1/auth/challenge",
                                        json={"device_id": self.device_id})).json()["challenge"])
        r = await http.post("/v1/auth/login", json={
            "device_id": self.device_id, "challenge": b64encode(ch),
            "signature": b64encode(ed25519_sign(self.seed, login_message(ch, self.device_id)))})
        r.raise_for_status()
        self.token = r.json()["token"]

    async def connect(self, ws_url: str) -> None:
        self.ws = await websockets.connect(
            ws_url, additional_headers={"authorization": f"Bearer {self.token}"},
            max_size=2**22, compression=None)

    async def reader(self, measuring: list[bool]) -> None:
        assert self.ws is not None
        async for raw in self.ws:
            message = json.loads(raw)  # one frame, or an array of those ready together
            for frame in message if isinstance(message, list) else [message]:
                await self._take(frame, measuring)

    async def _take(self, frame: dict, measuring: list[bool]) -> None:
        t = frame["type"]
        if t == "accepted":
            self.accepted += 1
            self.inflight -= 1
            self.slot.set()
        elif t == "deliver":
            env = frame["envelope"]
            if env["kind"] == "application":
                sent = float(env["id"].split("_")[1]) / 1e9
                if measuring[0]:
                    self.delivered += 1
                    self.latencies.append(time.time() - sent)
            self.pending_acks.append(frame["seq"])
            if len(self.pending_acks) >= 32:
                await self.flush_acks()
        elif t == "refused":
            raise RuntimeError(f"refused: {frame}")

    async def flush_acks(self) -> None:
        if self.pending_acks and self.ws is not None:
            seqs, self.pending_acks = self.pending_acks, []
            await self.ws.send(json.dumps({"type": "ack", "seqs": seqs}))

    async def send_one(self, n: int) -> None:
        assert self.ws is not None
        self.inflight += 1
        await self.ws.send(json.dumps({
            "type": "send", "id": f"{n}_{time.time_ns()}", "group_id": self.group,
            "payload": b64encode(PAYLOAD)}))


async def setup(url: str, ws_url: str, codes: list[str]) -> list[Dev]:
    devs = [Dev(url) for _ in codes]
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        sem = asyncio.Semaphore(8)

        async def one(d: Dev, code: str) -> None:
            async with sem:
                await d.enroll(http, code)

        await asyncio.gather(*(one(d, c) for d, c in zip(devs, codes, strict=True)))
        for a, b in zip(devs[0::2], devs[1::2], strict=True):
            gid = b64encode(os.urandom(16))
            r = await http.post("/v1/groups", json={"group_id": gid},
                                headers={"authorization": f"Bearer {a.token}"})
            r.raise_for_status()
            a.peer, b.peer, a.group, b.group = b, a, gid, gid
    await asyncio.gather(*(d.connect(ws_url) for d in devs))
    # one commit per pair adds the peer (the relay routes by declared membership)
    for a in devs[0::2]:
        assert a.ws is not None and a.peer is not None
        await a.ws.send(json.dumps({"type": "commit", "id": "c0", "group_id": a.group,
                                    "epoch": 0, "payload": b64encode(b"commit"),
                                    "add_devices": [a.peer.device_id]}))
        json.loads(await a.ws.recv())
    return devs


async def throughput(devs: list[Dev], seconds: float, window: int) -> tuple[float, float]:
    measuring = [False]
    readers = [asyncio.create_task(d.reader(measuring)) for d in devs]
    stop = time.monotonic() + seconds + 1.0
    counter = [0]

    async def sender(d: Dev) -> None:
        while time.monotonic() < stop:
            while d.inflight >= window:
                d.slot.clear()
                await d.slot.wait()
            counter[0] += 1
            await d.send_one(counter[0])

    senders = [asyncio.create_task(sender(d)) for d in devs]
    await asyncio.sleep(1.0)  # warm-up
    measuring[0] = True
    a0 = sum(d.accepted for d in devs)
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    accepted = sum(d.accepted for d in devs) - a0
    delivered = sum(d.delivered for d in devs)
    measuring[0] = False
    await asyncio.gather(*senders)
    await asyncio.sleep(1.0)
    for d in devs:
        await d.flush_acks()
    for t in readers:
        t.cancel()
    return accepted / elapsed, delivered / elapsed


async def latency(devs: list[Dev], rate: float, seconds: float) -> list[float]:
    for d in devs:
        d.latencies.clear()
    measuring = [True]
    readers = [asyncio.create_task(d.reader(measuring)) for d in devs]
    interval = 1.0 / rate
    start = time.monotonic()
    n = 0
    while (now := time.monotonic()) - start < seconds:
        due = start + n * interval
        if due > now:
            await asyncio.sleep(due - now)
        await devs[n % len(devs)].send_one(n)
        n += 1
    await asyncio.sleep(1.0)
    for t in readers:
        t.cancel()
    return [x for d in devs for x in d.latencies]


def pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(p / 100 * len(values)))]


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "relay"
        pp = Path(tmp) / "pass"
        pp.write_text(PASS)
        subprocess.run([str(BIN), "init", "--data", str(data_dir), "--org", "Bench",
                        "--passphrase-file", str(pp), "--kdf", "interactive"], check=True,
                       capture_output=True)
        data = DataDir(data_dir)
        if args.sync != "FULL":
            cfg = data.load_config()
            data.save_config(cfg.model_copy(update={"sqlite_synchronous": args.sync}))
        codes = await provision(data, args.devices)
        port = 18765
        proc = subprocess.Popen([str(BIN), "serve", "--data", str(data_dir), "--port",
                                 str(port), "--passphrase-file", str(pp)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    if httpx.get(url + "/v1/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            devs = await setup(url, f"ws://127.0.0.1:{port}/v1/ws", codes)
            acc, dlv = await throughput(devs, args.seconds, args.window)
            figure(f"messages_accepted_per_s_{args.devices}_devices", acc, "msg/s")
            figure(f"messages_delivered_per_s_{args.devices}_devices", dlv, "msg/s")
            lat = await latency(devs, args.rate, args.seconds)
            figure(f"delivery_latency_p50_at_{args.rate:g}_msg_s", pct(lat, 50) * 1e3, "ms")
            figure(f"delivery_latency_p99_at_{args.rate:g}_msg_s", pct(lat, 99) * 1e3, "ms")
            figure("latency_samples", float(len(lat)), "msg")
            figure("delivery_latency_mean", statistics.fmean(lat) * 1e3, "ms")
            for d in devs:
                if d.ws is not None:
                    await d.ws.close()
        finally:
            proc.terminate()
            proc.wait(20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--window", type=int, default=8, help="messages in flight per sender")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--sync", choices=("FULL", "NORMAL"), default="FULL",
                    help="SQLite synchronous mode of the relay under test")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
