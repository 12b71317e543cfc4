"""``liaison``: the command-line client of one enrolled device (a profile directory).

Scripts take ids from the last word of a command's output. Room ids may begin with ``-``:
put ``--`` before them (``liaison --profile P send -- ROOM TEXT``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from app.cli import commands
from app.client.engine import EngineError
from app.client.relay_api import RelayError, RelayUnavailable
from crypto.key_wrap import WrongPassphraseError
from storage.errors import StorageError
from storage.rooms import RoomKind

FAILURES = (EngineError, RelayError, RelayUnavailable, StorageError, WrongPassphraseError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liaison", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, required=True,
                        help="this device's profile directory (encrypted database, key)")
    sub = parser.add_subparsers(dest="command", required=True)

    enroll = sub.add_parser("enroll", help="enrol this profile with a one-time invite code")
    enroll.add_argument("--relay", required=True, help="the relay's URL, e.g. http://127.0.0.1:8443")
    enroll.add_argument("--code", required=True, help="the invite code from `liaison-relay invite`")
    enroll.add_argument("--device-name", default="Liaison CLI")
    enroll.add_argument("--totp-secret-out", type=Path,
                        help="write the TOTP secret there (mode 0600), for scripts")
    enroll.set_defaults(run=commands.enroll)

    sub.add_parser("whoami", help="this user and device").set_defaults(run=commands.whoami)
    sub.add_parser("devices", help="this user's devices").set_defaults(run=commands.devices)
    directory = sub.add_parser("directory", help="search the hospital directory")
    directory.add_argument("query", nargs="?", default="")
    directory.set_defaults(run=commands.directory)

    _add_room_parsers(sub.add_parser("room", help="rooms").add_subparsers(dest="room_command",
                                                                          required=True))

    send = sub.add_parser("send", help="send a text message")
    send.add_argument("room")
    send.add_argument("text")
    send.add_argument("--urgent", action="store_true", help="to be acknowledged by recipients")
    send.set_defaults(run=commands.send)

    ack = sub.add_parser("ack", help="acknowledge an urgent message received")
    ack.add_argument("message", metavar="MESSAGE_ID", help="its id, as `messages --json` shows")
    ack.set_defaults(run=commands.ack)

    sync = sub.add_parser("sync", help="go online, receive, and send what is pending")
    sync.add_argument("--wait", type=float, default=5.0, metavar="SECONDS")
    sync.set_defaults(run=commands.sync)

    messages = sub.add_parser("messages", help="a room's latest messages, oldest first")
    messages.add_argument("room")
    messages.add_argument("--limit", type=int, default=50)
    messages.add_argument("--json", action="store_true")
    messages.set_defaults(run=commands.messages)
    return parser


def _add_room_parsers(rooms: argparse._SubParsersAction) -> None:
    create = rooms.add_parser("create", help="a new room; prints its id last")
    create.add_argument("--kind", required=True, choices=[k.value for k in RoomKind])
    create.add_argument("--name", required=True)
    create.add_argument("--member", action="append", default=[], metavar="USER_ID",
                        help="a user to add (repeat for several)")
    create.set_defaults(run=commands.room_create)
    rooms.add_parser("list", help="the rooms of this device").set_defaults(run=commands.room_list)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(args.run(args))
    except FAILURES as exc:
        print(f"liaison: error: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
