"""The device's one WebSocket to the relay.

``SyncProtocol`` is the sans-I/O part: it turns incoming frame text into events and outgoing
frames into text, and remembers which client ids await an answer, so that it can be tested
without a socket. ``Connection`` is the thin asyncio adapter around it: connect, reconnect
with backoff, re-send what is in flight (the relay is idempotent by client id).

Events are the relay's own frames (``Accepted``, ``Refused``, ``Deliver``, ``Revoked`` from
``protocol.frames``): the wire contract already types them, a second set would only drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random as _random
from collections.abc import Awaitable, Callable, Iterable
from enum import StrEnum

import websockets
from pydantic import ValidationError

from app.client.relay_api import RelayError, RelayUnavailable
from protocol import frames as fr
from protocol.problems import Code

log = logging.getLogger("liaison.client.connection")

Event = fr.Accepted | fr.Refused | fr.Deliver | fr.Revoked
Outgoing = fr.Send | fr.Commit

CLOSE_UNAUTHENTICATED = 4001  # the token was refused when connecting
CLOSE_REVOKED = 4003  # the device was revoked while connected
MAX_ACK = 1000  # seqs per ack frame (protocol.frames.Ack)


class ProtocolViolation(Exception):
    """The relay sent something that is not a server frame."""


class SyncProtocol:
    """Frames in and out of one device's delivery stream, without any I/O."""

    def __init__(self) -> None:
        self._in_flight: dict[str, str] = {}  # client id -> frame text, in sending order
        self.revoked = False

    @property
    def in_flight(self) -> list[str]:
        """Client ids sent and not yet answered."""
        return list(self._in_flight)

    def send(self, frame: Outgoing) -> str:
        """The frame's text; it stays in flight until the relay accepts or refuses it."""
        text = frame.model_dump_json(exclude_none=True)
        if self._in_flight.setdefault(frame.id, text) != text:
            raise ValueError(f"client id {frame.id} is already in flight with another frame")
        return text

    def ack(self, seqs: Iterable[int]) -> list[str]:
        """Ack frames for stored mailbox entries (acks are not retried: the relay
        delivers again what was not acknowledged, and the cache dedupes)."""
        seqs = list(seqs)
        return [fr.Ack(seqs=seqs[i:i + MAX_ACK]).model_dump_json()
                for i in range(0, len(seqs), MAX_ACK)]

    def resend(self) -> list[str]:
        """Everything in flight, in the original order, for a new connection."""
        return list(self._in_flight.values())

    def receive(self, text: str | bytes) -> list[Event | ProtocolViolation]:
        """The events a message's frames mean, in order, each malformed frame as a violation
        in its place. A transient refusal means none: a frame the relay could not store (5xx)
        stays in flight and goes again with the next connection."""
        events: list[Event | ProtocolViolation] = []
        for frame in fr.parse(fr.SERVER_FRAME, text):
            match frame:
                case ValidationError():
                    events.append(ProtocolViolation(
                        f"not a server frame: {frame.error_count()} error(s)"))
                    continue
                case ValueError():
                    events.append(ProtocolViolation(f"not server frames: {frame}"))
                    continue
                case fr.Refused(problem=problem) if problem.status >= 500:
                    continue
                case fr.Accepted(id=frame_id) | fr.Refused(id=frame_id):
                    self._in_flight.pop(frame_id, None)
                case fr.Revoked():
                    self.revoked = True
            events.append(frame)
        return events


class State(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"  # closed by the caller
    REVOKED = "revoked"  # final: this device is cut off
    UNAUTHENTICATED = "unauthenticated"  # final: no token the relay accepts


def backoff_delay(attempt: int, random: Callable[[], float], *, base: float = 0.5,
                  cap: float = 30.0) -> float:
    """Exponential backoff with full jitter, so that a restarted relay is not stampeded."""
    return random() * min(cap, base * 2 ** attempt)


class Connection:
    """Keeps one WebSocket open until closed, revoked, or refused for good.

    Without a token (the relay was unreachable when the device logged in), it logs in with
    ``refresh_token`` first, retrying with the same backoff as connecting.
    """

    def __init__(self, url: str, token: str | None, *,
                 on_event: Callable[[Event], Awaitable[None]],
                 on_state: Callable[[State], None] | None = None,
                 refresh_token: Callable[[], Awaitable[str]] | None = None,
                 random: Callable[[], float] = _random.random,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 base: float = 0.5, cap: float = 30.0, open_timeout: float = 10.0,
                 max_size: int = 8 * 1024 * 1024) -> None:
        self.protocol = SyncProtocol()
        self._url, self._token = url, token
        self._on_event, self._on_state, self._refresh = on_event, on_state, refresh_token
        self._random, self._sleep, self._base, self._cap = random, sleep, base, cap
        self._open_timeout, self._max_size = open_timeout, max_size
        self._ws: websockets.ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self.state = State.OFFLINE

    async def __aenter__(self) -> Connection:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="liaison-connection")

    async def close(self) -> None:
        """Stop for good; in-flight frames stay in ``protocol`` for the caller's outbox."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.state not in (State.REVOKED, State.UNAUTHENTICATED):
            self._set_state(State.OFFLINE)

    async def send(self, *frames: Outgoing) -> None:
        """Send now if connected; otherwise the frames go out with the next connection."""
        await self._write([self.protocol.send(frame) for frame in frames])

    async def ack(self, seqs: Iterable[int]) -> None:
        await self._write(self.protocol.ack(seqs))

    async def _write(self, texts: list[str]) -> None:
        ws = self._ws
        if ws is None:
            return
        with contextlib.suppress(websockets.ConnectionClosed):  # re-sent after reconnecting
            for message in fr.batched(texts):
                await ws.send(message)

    def _set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            if self._on_state is not None:
                self._on_state(state)

    async def _run(self) -> None:
        attempt, refreshed = 0, False
        self._set_state(State.CONNECTING)
        while True:
            if self._token is None:
                final = await self._log_in()
                if final is not None:
                    self._set_state(final)
                    return
            code, reason = (None, "") if self._token is None else await self._session()
            if (self.protocol.revoked or code == CLOSE_REVOKED
                    or reason == Code.DEVICE_REVOKED.value):
                self._set_state(State.REVOKED)
                return
            if code == CLOSE_UNAUTHENTICATED:
                if refreshed or self._refresh is None:
                    self._set_state(State.UNAUTHENTICATED)
                    return
                refreshed, self._token = True, None
                continue  # straight away: the relay is up, only the token was stale
            refreshed = False
            if self.state is State.CONNECTED:
                attempt = 0
            self._set_state(State.RECONNECTING)
            await self._sleep(backoff_delay(attempt, self._random, base=self._base,
                                            cap=self._cap))
            attempt += 1

    async def _log_in(self) -> State | None:
        """A fresh token, or None left while the relay is unreachable; the final state if the
        relay refuses this device for good."""
        if self._refresh is None:
            return State.UNAUTHENTICATED
        try:
            self._token = await self._refresh()
        except RelayError as e:
            return State.REVOKED if e.code is Code.DEVICE_REVOKED else State.UNAUTHENTICATED
        except RelayUnavailable as e:
            log.info("relay unreachable for logging in: %s", e)
        return None

    async def _session(self) -> tuple[int | None, str]:
        """One connection, until it ends: its close code and reason (None if it never opened)."""
        try:
            async with websockets.connect(
                    self._url, additional_headers={"authorization": f"Bearer {self._token}"},
                    open_timeout=self._open_timeout, max_size=self._max_size,
                    compression=None) as ws:  # ciphertext: deflate costs CPU, saves little
                self._ws = ws
                self._set_state(State.CONNECTED)
                await self._write(self.protocol.resend())
                with contextlib.suppress(websockets.ConnectionClosed):
                    async for text in ws:
                        await self._dispatch(text)
                return ws.close_code, ws.close_reason or ""
        except (OSError, TimeoutError, websockets.InvalidHandshake) as e:
            log.info("relay unreachable: %r", e)
            return None, ""
        finally:
            self._ws = None

    async def _dispatch(self, text: str | bytes) -> None:
        for event in self.protocol.receive(text):
            if isinstance(event, ProtocolViolation):
                log.warning("ignoring a frame from the relay: %s", event)
            else:
                await self._on_event(event)
