"""The MLLP listener: a thin asyncio adapter between TCP and ``Bridge.handle``.

MLLP frames each message as <VT> message <FS><CR>; the sender waits for the ACK before sending
the next one, so a connection is served one message at a time. A block that is not framed
right ends the connection (there is nothing to acknowledge); the sender reconnects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from hl7.mllp import HL7StreamReader, HL7StreamWriter, InvalidBlockError, start_hl7_server

log = logging.getLogger("liaison.bridge.mllp")

MAX_MESSAGE_BYTES = 1024 * 1024  # an ADT message is a few kB; this bounds a runaway sender

Handler = Callable[[bytes], Awaitable[bytes]]  # message -> ACK


async def serve(handler: Handler, host: str, port: int) -> asyncio.Server:
    """Listen on host:port; each message's ACK is what ``handler`` returns."""

    async def connected(reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                block = await reader.readblock()
                writer.writeblock(await handler(block))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass  # the sender hung up between messages
        except (InvalidBlockError, ValueError, ConnectionError) as e:
            log.warning("MLLP connection from %s closed: %s", peer, e)
        except Exception:  # a bug must not pass silently in a detached task
            log.exception("MLLP connection from %s failed", peer)
        finally:
            writer.close()

    return await start_hl7_server(connected, host, port, limit=MAX_MESSAGE_BYTES)
