"""A real relay for tests: `liaison-relay init` + `serve` as a subprocess on 127.0.0.1,
and small real clients (httpx for REST, websockets for delivery) acting as devices.

Users and invitation codes, which the suite makes by the hundred, come from the same
`liaison-relay user add` and `invite` commands run inside the test's process (``in_process``):
starting Python again for each took most of the suite's time. Every other command, `init`
first, runs as the subprocess an administrator would start.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

from crypto.primitives import ed25519_public, ed25519_sign
from protocol.auth import enroll_proof_message, login_message
from protocol.encoding import b64decode, b64encode
from relay import cli as relay_cli

PASSPHRASE = "correct horse battery staple"
BIN = Path(sys.executable).parent / "liaison-relay"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(data: Path, command: str, *args: str, check: bool = True) -> str:
    """Run `liaison-relay COMMAND --data DATA ARGS...` and return its stdout."""
    out = subprocess.run([str(BIN), *command.split(), "--data", str(data), *args],
                         capture_output=True, text=True, timeout=120)
    if check and out.returncode != 0:
        raise AssertionError(f"liaison-relay {command} failed: {out.stderr}")
    return out.stdout


def in_process(data: Path, command: str, *args: str) -> str:
    """Run `liaison-relay COMMAND --data DATA ARGS...` in this process (its own parser,
    command and admin code) and return its stdout. In a thread: the command runs an event loop
    of its own, and the caller may be inside one."""
    out = io.StringIO()

    def run() -> None:
        with contextlib.redirect_stdout(out):
            relay_cli.main([*command.split(), "--data", str(data), *args])

    with ThreadPoolExecutor(1) as pool:
        try:
            pool.submit(run).result(timeout=120)
        except SystemExit as e:
            raise AssertionError(f"liaison-relay {command} failed: {e}") from None
    return out.getvalue()


@dataclass
class RelayProcess:
    data: Path
    port: int = field(default_factory=free_port)
    db: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    def init(self, org: str = "CHU Exemple") -> None:
        pp = self.data.parent / f"{self.data.name}.pass"
        pp.write_text(PASSPHRASE)
        args = ["init", "--org", org, "--passphrase-file", str(pp), "--kdf", "interactive"]
        if self.db:
            args += ["--db", self.db]
        cli(self.data, *args)  # "init", then its options

    def configure(self, **settings: Any) -> None:
        """Change relay.json between init and start (the relay validates it as it starts)."""
        path = self.data / "relay.json"
        path.write_text(json.dumps({**json.loads(path.read_text("utf-8")), **settings}), "utf-8")

    def start(self) -> None:
        pp = self.data.parent / f"{self.data.name}.pass"
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--data", str(self.data), "--port", str(self.port),
             "--passphrase-file", str(pp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"relay exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("relay did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def add_user(self, name: str, profession: str = "nurse", *extra: str) -> str:
        return in_process(self.data, "user add", "--name", name, "--profession", profession,
                          *extra).split()[-1]

    def invite(self, user_id: str) -> str:
        return in_process(self.data, "invite", user_id).split()[-1]


@contextlib.contextmanager
def running_relay(tmp: Path, db: str | None = None, **settings: Any) -> Iterator[RelayProcess]:
    """``settings`` override relay.json (e.g. small limits) before the relay starts."""
    relay = RelayProcess(tmp / "relay", db=db)
    relay.init()
    if settings:
        relay.configure(**settings)
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


@dataclass
class Device:
    """A device as the relay sees it: keys, credential, a token, and a WebSocket."""

    relay: RelayProcess
    seed: bytes
    user_id: str = ""
    device_id: str = ""
    credential: bytes = b""
    organisation_key: bytes = b""
    totp_uri: str | None = None
    token: str = ""
    ws: Any = None
    received: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    unread: list[dict[str, Any]] = field(default_factory=list)  # read off the socket, not taken

    @property
    def public_key(self) -> bytes:
        return ed25519_public(self.seed)

    def http(self) -> httpx.Client:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.relay.url, headers=headers, timeout=30)

    def enroll(self, code: str, totp: str | None = None) -> httpx.Response:
        proof = ed25519_sign(self.seed, enroll_proof_message(code, self.public_key))
        body = {"invite_code": code, "device_name": "test phone",
                "signature_key": b64encode(self.public_key), "proof": b64encode(proof)}
        if totp:
            body["totp"] = totp
        with self.http() as c:
            r = c.post("/v1/enroll", json=body)
        if r.status_code == 200:
            j = r.json()
            self.user_id, self.device_id = j["user_id"], j["device_id"]
            self.credential, self.totp_uri = b64decode(j["credential"]), j["totp_uri"]
            self.organisation_key = b64decode(j["organisation_key"])
        return r

    def login(self) -> httpx.Response:
        with self.http() as c:
            r = c.post("/v1/auth/challenge", json={"device_id": self.device_id})
            if r.status_code != 200:
                return r
            ch = b64decode(r.json()["challenge"])
            sig = ed25519_sign(self.seed, login_message(ch, self.device_id))
            r = c.post("/v1/auth/login", json={"device_id": self.device_id,
                                               "challenge": b64encode(ch),
                                               "signature": b64encode(sig)})
        if r.status_code == 200:
            self.token = r.json()["token"]
        return r

    # -- WebSocket ----------------------------------------------------------------------------
    async def connect(self) -> None:
        self.unread = []
        self.ws = await websockets.connect(
            self.relay.ws_url, additional_headers={"authorization": f"Bearer {self.token}"},
            max_size=8 * 1024 * 1024)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def next_frame(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame from the relay, which sends one or an array of them per message."""
        if not self.unread:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            self.unread = message if isinstance(message, list) else [message]
        return self.unread.pop(0)

    async def pump(self, until, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        """Read frames until ``until(self)`` holds."""
        deadline = time.monotonic() + timeout
        while not until(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for frames")
            try:
                frame = await self.next_frame(left)
            except TimeoutError:
                raise AssertionError("timed out waiting for frames") from None
            if frame["type"] == "deliver":
                self.received.append(frame)
            elif frame["type"] in ("accepted", "refused"):
                self.answers[frame["id"]] = frame
            else:
                self.received.append(frame)

    async def ack_all(self) -> None:
        seqs = [f["seq"] for f in self.received if f["type"] == "deliver"]
        if seqs:
            await self.send_frame({"type": "ack", "seqs": seqs})


def new_device(relay: RelayProcess, user_id: str | None = None, *, name: str = "Infirmière",
               profession: str = "nurse") -> Device:
    """A freshly enrolled and logged-in device of a (new) user."""
    uid = user_id or relay.add_user(name, profession)
    dev = Device(relay, os.urandom(32))
    r = dev.enroll(relay.invite(uid))
    assert r.status_code == 200, r.text
    assert dev.login().status_code == 200
    return dev


PG_ADMIN = os.environ.get("LIAISON_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A database of its own on the local PostgreSQL server, dropped afterwards."""
    import asyncpg

    name = "liaison_test_" + os.urandom(6).hex()

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def postgres_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


async def make_group(creator: Device, members: list[Device]) -> str:
    """A new group (base64url id) of ``creator``, which must be connected, and ``members``."""
    gid = b64encode(os.urandom(16))
    with creator.http() as c:
        assert c.post("/v1/groups", json={"group_id": gid}).status_code == 201
    if not members:
        return gid
    cid = "create-" + os.urandom(8).hex()  # client ids are idempotency keys: one per group
    await creator.send_frame({"type": "commit", "id": cid, "group_id": gid, "epoch": 0,
                              "payload": b64encode(b"commit-0"),
                              "welcome": b64encode(b"welcome"),
                              "add_devices": [m.device_id for m in members]})
    await creator.pump(lambda d: cid in d.answers)
    assert creator.answers[cid]["type"] == "accepted", creator.answers[cid]
    return gid
