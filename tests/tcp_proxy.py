"""A TCP proxy for tests: between a client and the relay, cutting connections on demand.

It runs its own asyncio loop in a thread, so sync tests, async tests and subprocesses (the
CLI) can all go through it::

    with TcpProxy(relay.port) as proxy:      # listens on 127.0.0.1:proxy.port
        ...  client configured with proxy.url instead of relay.url
        proxy.cut_after(5_000_000)           # cut every open connection once 5 MB more went up
        proxy.cut_after(5_000_000, downstream=True)  # ... or came down
        proxy.cut()                          # or cut them all now
        proxy.uploaded, proxy.downloaded     # bytes forwarded client -> relay, relay -> client
        proxy.cuts                           # how many times connections were cut

A cut aborts both sides of every open connection (a reset, as when a Wi-Fi access point is
left); connections opened afterwards go through again, like a network that came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

READ_SIZE = 64 * 1024
T = TypeVar("T")


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="tcp-proxy")
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._cut_at: tuple[bool, int] | None = None  # (downstream, byte count)
        self.port = 0
        self.uploaded = 0  # bytes forwarded from clients to the target
        self.downloaded = 0  # bytes forwarded from the target to clients
        self.cuts = 0  # times open connections were cut

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def cut(self) -> None:
        """Abort every open connection now."""
        self._loop.call_soon_threadsafe(self._cut)
        self._run(asyncio.sleep(0))  # the cut has happened when this returns

    def cut_after(self, more_bytes: int, *, downstream: bool = False) -> None:
        """Abort every open connection once ``more_bytes`` more went from clients to the
        target (or from the target to clients); the bytes that would cross the mark are not
        forwarded. Fires once."""
        self._cut_at = (downstream, self._count(downstream) + more_bytes)

    def _count(self, downstream: bool) -> int:
        return self.downloaded if downstream else self.uploaded

    def _reaches_mark(self, downstream: bool, size: int) -> bool:
        """Whether ``size`` more bytes this way reach the armed mark (which is then spent)."""
        mark = self._cut_at
        if mark is None or mark[0] != downstream or self._count(downstream) + size < mark[1]:
            return False
        self._cut_at = None
        return True

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _cut(self) -> None:
        self.cuts += 1
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        self._cut()
        await self._server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            target_r, target_w = await asyncio.open_connection(*self._target)
        except OSError:
            client_w.transport.abort()
            return
        self._open |= {client_w, target_w}
        await asyncio.gather(self._pump(client_r, target_w, downstream=False),
                             self._pump(target_r, client_w, downstream=True))
        for writer in (client_w, target_w):
            self._open.discard(writer)
            writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                    downstream: bool) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(READ_SIZE):
                if self._reaches_mark(downstream, len(data)):
                    self._cut()
                    return
                if downstream:
                    self.downloaded += len(data)
                else:
                    self.uploaded += len(data)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
