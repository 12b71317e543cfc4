"""Connected devices and what the relay pushes to them.

Each device has at most one WebSocket. A connection first drains its mailbox backlog from the
database (in order, page by page), then forwards live envelopes; sequence numbers make the
two sources meet without gaps or duplicates. A connection whose queue overflows while its
writer waits on the socket (a slow or dead client) is closed: its messages stay in the mailbox
for the next connection. A burst queued at once (one writer batch may hold thousands of
frames for a device) while the socket drains is not slowness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from protocol.encoding import b64encode
from protocol.frames import batched
from relay.writer import NewEnvelope

log = logging.getLogger("liaison.relay.delivery")

Sender = Callable[[str], Awaitable[None]]
Closer = Callable[[int, str], Awaitable[None]]
BacklogPage = Callable[[str, int, int], Awaitable[list[tuple[int, str]]]]


def envelope_json(env: NewEnvelope, sent_at: float, client_id: str | None = None) -> str:
    """The Envelope body once per message; each recipient's frame only adds its seq."""
    return json.dumps({
        "id": client_id if client_id is not None else f"r{env.id}",
        "group_id": b64encode(env.group_id),
        "sender_device": env.sender_device,
        "kind": env.kind,
        "epoch": env.epoch,
        "payload": b64encode(env.payload),
        "sent_at": sent_at,
    }, separators=(",", ":"))


def deliver_frame(seq: int, envelope: str) -> str:
    return f'{{"type":"deliver","seq":{seq},"envelope":{envelope}}}'


class Connection:
    """One device's WebSocket: a bounded queue and the task that writes it out."""

    def __init__(self, device_id: str, send: Sender, close: Closer,
                 *, limit: int) -> None:
        self.device_id = device_id
        self._send = send
        self._close = close
        self.queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        self.limit = limit
        self.last_sent = 0
        self.closed = asyncio.Event()
        self.ready = False
        self.waiting = False  # the writer is blocked in a send: the socket does not drain
        self.close_code, self.close_reason = 1000, ""

    def push(self, seq: int, frame: str) -> None:
        """seq 0 marks a control frame (accepted, refused), never skipped."""
        if self.closed.is_set():
            return
        if self.queue.qsize() >= self.limit and self.waiting:
            log.warning("device %s is too slow: disconnecting", self.device_id)
            self.drop(4008, "too slow")
            return
        self.queue.put_nowait((seq, frame))

    def drop(self, code: int, reason: str) -> None:
        """Close now (the client may be stuck): whatever is queued stays in the mailbox."""
        if not self.closed.is_set():
            self.closed.set()
            self.close_code, self.close_reason = code, reason
            self.queue.put_nowait(None)
            asyncio.get_running_loop().create_task(self._safe_close(code, reason))

    def finish(self, code: int, reason: str, last_frame: str) -> None:
        """Send one last frame, then close; forced after two seconds."""
        if self.closed.is_set():
            return
        self.closed.set()
        self.queue.put_nowait((0, last_frame))
        self.queue.put_nowait(None)
        loop = asyncio.get_running_loop()
        loop.call_later(2.0, lambda: loop.create_task(self._safe_close(code, reason)))
        self.close_code, self.close_reason = code, reason

    async def _safe_close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self._close(code, reason)

    async def _write(self, frames: list[str]) -> None:
        """Returns without suspending while the socket drains; blocks when the client stalls."""
        self.waiting = True
        for message in batched(frames):
            await self._send(message)
        self.waiting = False

    async def run(self, backlog: BacklogPage, page: int) -> None:
        """Backlog first, then live frames, until the connection closes. Whatever is queued
        when the writer gets to it goes out together (protocol.frames.batched)."""
        while not self.closed.is_set():
            rows = await backlog(self.device_id, self.last_sent, page)
            if rows:
                await self._write([frame for _, frame in rows])
                self.last_sent = rows[-1][0]
            if len(rows) < page:
                break
        self.ready = True
        while True:
            items = [await self.queue.get()]
            while items[-1] is not None and not self.queue.empty():
                items.append(self.queue.get_nowait())
            frames, last_sent = [], self.last_sent
            for item in items:
                if item is None:
                    break
                seq, frame = item
                if seq and seq <= last_sent:
                    continue  # already sent from the backlog
                frames.append(frame)
                last_sent = max(last_sent, seq)
            if frames:
                await self._write(frames)
                self.last_sent = last_sent
            if items[-1] is None:
                await self._safe_close(self.close_code, self.close_reason)
                return


class Hub:
    """device id -> its live connection."""

    def __init__(self) -> None:
        self.connections: dict[str, Connection] = {}

    def attach(self, conn: Connection) -> None:
        old = self.connections.get(conn.device_id)
        if old is not None:
            old.drop(4009, "replaced by a newer connection")
        self.connections[conn.device_id] = conn

    def detach(self, conn: Connection) -> None:
        if self.connections.get(conn.device_id) is conn:
            del self.connections[conn.device_id]

    def deliver(self, envelopes: list[NewEnvelope]) -> None:
        for env in envelopes:
            body = None
            for device, seq in env.seqs:
                conn = self.connections.get(device)
                if conn is None:
                    continue
                if body is None:
                    body = envelope_json(env, env.sent_at, env.client_id)
                conn.push(seq, deliver_frame(seq, body))

    def send_control(self, device: str, frame: str) -> None:
        conn = self.connections.get(device)
        if conn is not None:
            conn.push(0, frame)

    def disconnect(self, device: str, code: int, reason: str, last_frame: str) -> None:
        conn = self.connections.get(device)
        if conn is not None:
            conn.finish(code, reason, last_frame)

    def close_all(self) -> None:
        for conn in list(self.connections.values()):
            conn.drop(1001, "relay shutting down")
