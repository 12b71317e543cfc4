"""The delivery WebSocket: one per device, authenticated by its bearer token.

Frames in: send, commit, ack. Frames out: accepted/refused (answers, any order), deliver
(mailbox entries, in sequence order), revoked. A message carries one frame or an array of
them (protocol.frames): what is ready at once goes out together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from protocol import frames as fr
from protocol.problems import Code
from relay.deps import bearer
from relay.errors import ProblemError
from relay.service import Relay

log = logging.getLogger("liaison.relay.ws")


def _refused(frame_id: str, err: ProblemError) -> str:
    return fr.Refused(id=frame_id, problem=err.problem()).model_dump_json(exclude_none=True)


async def endpoint(ws: WebSocket) -> None:
    relay: Relay = ws.app.state.relay
    try:
        device = await relay.authenticate(bearer(ws))  # type: ignore[arg-type]
    except ProblemError as e:
        # a close before accept would be an HTTP 403 handshake refusal, losing code and reason
        await ws.accept()
        await ws.close(code=4001, reason=e.code.value)
        return
    await ws.accept()
    conn = relay.connection(device.device_id, ws.send_text, ws.close)
    writer_task = asyncio.create_task(conn.run(relay.backlog, relay.config.backlog_page))

    def answer(frame_id: str, fut: asyncio.Future[fr.Accepted]) -> None:
        try:
            conn.push(0, fut.result().model_dump_json(exclude_none=True))
        except ProblemError as e:
            conn.push(0, _refused(frame_id, e))
        except Exception:  # storage failure: the client resends with the same id
            conn.push(0, _refused(frame_id, ProblemError(500, Code.INTERNAL, "not stored")))

    def take(frame: fr.Send | fr.Commit | fr.Ack | ValueError) -> None:
        if isinstance(frame, ValueError):
            detail = (f"{frame.error_count()} error(s)" if isinstance(frame, ValidationError)
                      else "not JSON frames")
            conn.push(0, _refused("?", ProblemError(422, Code.VALIDATION,
                                                    f"malformed frame: {detail}")))
        elif not relay.accepting:
            conn.push(0, _refused(getattr(frame, "id", "?"), ProblemError(
                503, Code.INTERNAL, "relay is shutting down")))
        elif isinstance(frame, fr.Ack):
            relay.submit_ack(device, frame.seqs)
        else:
            fut = (relay.submit_send(device, frame) if isinstance(frame, fr.Send)
                   else relay.submit_commit(device, frame))
            fut.add_done_callback(lambda f, i=frame.id: answer(i, f))

    try:
        while not conn.closed.is_set():
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            text = msg.get("text")
            if text is None:
                conn.push(0, _refused("?", ProblemError(
                    422, Code.VALIDATION, "frames are JSON text, not binary")))
                continue
            for frame in fr.parse(fr.CLIENT_FRAME, text):  # one, or an array of them
                take(frame)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        relay.hub.detach(conn)
        conn.closed.set()
        conn.queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer_task, 5)
