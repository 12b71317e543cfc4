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

from app.cli import commands, record
from app.client.documents import DocumentError
from app.client.engine import EngineError
from app.client.linking import LinkError
from app.client.relay_api import RelayError, RelayUnavailable
from crypto.key_wrap import WrongPassphraseError
from record.errors import FhirError
from storage.errors import StorageError
from storage.members import RoomRole
from storage.rooms import RoomKind

FAILURES = (DocumentError, EngineError, FhirError, LinkError, RelayError, RelayUnavailable,
            StorageError, WrongPassphraseError)


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

    _add_link_parsers(sub.add_parser(
        "link", help="link a new device of your user, with its rooms' history"
    ).add_subparsers(dest="link_command", required=True))

    sub.add_parser("whoami", help="this user and device").set_defaults(run=commands.whoami)
    sub.add_parser("devices", help="this user's devices").set_defaults(run=commands.devices)
    directory = sub.add_parser("directory", help="search the hospital directory (offline: "
                               "the colleagues found before)")
    directory.add_argument("query", nargs="?", default="")
    directory.add_argument("--limit", type=int, default=20)
    directory.set_defaults(run=commands.directory)

    _add_room_parsers(sub.add_parser("room", help="rooms").add_subparsers(dest="room_command",
                                                                          required=True))

    send = sub.add_parser("send", help="send a text message")
    send.add_argument("room")
    send.add_argument("text")
    send.add_argument("--urgent", action="store_true", help="to be acknowledged by recipients")
    send.set_defaults(run=commands.send)

    send_file = sub.add_parser("send-file", help="share a document: PDF, image, text or DICOM")
    send_file.add_argument("room")
    send_file.add_argument("path", type=Path)
    send_file.add_argument("--caption", help="a text shown with the document")
    send_file.set_defaults(run=commands.send_file)

    fetch_file = sub.add_parser("fetch-file", help="download a shared document and save it")
    fetch_file.add_argument("message", metavar="MESSAGE_ID",
                            help="the document message's id, as `messages --json` shows")
    fetch_file.add_argument("out", type=Path, metavar="OUT", help="where to save it (a new file)")
    fetch_file.set_defaults(run=commands.fetch_file)

    edit = sub.add_parser("edit", help="correct one of your messages (the old text is kept)")
    edit.add_argument("message", metavar="MESSAGE_ID", help="its id, as `messages --json` shows")
    edit.add_argument("text")
    edit.set_defaults(run=commands.edit)

    recall = sub.add_parser("recall", help="erase one of your messages on every device")
    recall.add_argument("message", metavar="MESSAGE_ID", help="its id, as `messages --json` shows")
    recall.set_defaults(run=commands.recall)

    search = sub.add_parser("search", help="search the messages on this device")
    search.add_argument("query")
    search.add_argument("--room", help="only in this room")
    search.add_argument("--limit", type=int, default=20)
    search.set_defaults(run=commands.search)

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

    patient = sub.add_parser("patient", help="the hospital's record (FHIR)").add_subparsers(
        dest="patient_command", required=True)
    patient_search = patient.add_parser("search", help="find a patient in the record")
    record.add_fhir_options(patient_search, required=True)
    record.add_patient_options(patient_search)
    patient_search.set_defaults(run=record.patient_search)

    archive = sub.add_parser("archive", help="archive a patient room's messages and documents "
                             "to the patient's record (FHIR)")
    archive.add_argument("room")
    archive.add_argument("--message", action="append", default=[], metavar="MESSAGE_ID",
                         help="a message to archive (repeat; default: all the room's)")
    record.add_fhir_options(archive, required=True)
    archive.set_defaults(run=record.archive)
    return parser


def _add_link_parsers(link: argparse._SubParsersAction) -> None:
    start = link.add_parser("start", help="on the new device: show a code, wait, get history")
    start.add_argument("--relay", required=True, help="the relay's URL")
    start.add_argument("--device-name", default="Liaison CLI")
    start.add_argument("--wait", type=float, default=600.0, metavar="SECONDS")
    start.set_defaults(run=commands.link_start)
    approve = link.add_parser("approve", help="on a device you use: approve a new one's code")
    approve.add_argument("code", help="the code the new device shows, e.g. ABCD-EFGH")
    approve.add_argument("--totp", required=True, help="your authenticator app's code")
    approve.add_argument("--wait", type=float, default=120.0, metavar="SECONDS",
                         help="how long to wait for the new device to be ready")
    approve.set_defaults(run=commands.link_approve)


def _add_room_parsers(rooms: argparse._SubParsersAction) -> None:
    create = rooms.add_parser("create", help="a new room; prints its id last")
    create.add_argument("--kind", required=True, choices=[k.value for k in RoomKind])
    create.add_argument("--name", required=True)
    create.add_argument("--member", action="append", default=[], metavar="USER_ID",
                        help="a user to add (repeat for several)")
    create.add_argument("--retention-days", type=int, help="delete messages older than this")
    record.add_fhir_options(create, required=False)  # a patient room from the record
    record.add_patient_options(create, "patient-")
    create.set_defaults(run=record.room_create)
    invite = rooms.add_parser("invite", help="add users (all their devices); owners, moderators")
    invite.add_argument("room")
    invite.add_argument("user", nargs="+", metavar="USER_ID")
    invite.set_defaults(run=commands.room_invite)
    remove = rooms.add_parser("remove", help="remove a user; owners and moderators")
    remove.add_argument("room")
    remove.add_argument("user", metavar="USER_ID")
    remove.set_defaults(run=commands.room_remove)
    leave = rooms.add_parser("leave", help="leave a room and forget it on this device")
    leave.add_argument("room")
    leave.set_defaults(run=commands.room_leave)
    reopen = rooms.add_parser(
        "reopen", help="open a room this device can no longer read again, as a new room with "
        "the same members and roles, less those whose change it refused (owners and "
        "moderators); the members' old room then leads there")
    reopen.add_argument("room")
    reopen.set_defaults(run=commands.room_reopen)
    rename = rooms.add_parser("rename", help="rename a room; owners and moderators")
    rename.add_argument("room")
    rename.add_argument("name")
    rename.set_defaults(run=commands.room_rename)
    role = rooms.add_parser("role", help="give a member a role; owners and moderators")
    role.add_argument("room")
    role.add_argument("user", metavar="USER_ID")
    role.add_argument("role", choices=[r.value for r in RoomRole],
                      help="admin is a moderator; an observer reads but does not post")
    role.set_defaults(run=commands.room_role)
    archive = rooms.add_parser("archive", help="make a room read-only for everyone")
    archive.add_argument("room")
    archive.add_argument("--undo", action="store_true", help="make it writable again")
    archive.set_defaults(run=commands.room_archive)
    rooms.add_parser("list", help="the rooms of this device").set_defaults(run=commands.room_list)
    link = rooms.add_parser("link-patient", help="link a room to a patient of the record, or "
                            "change the link; owners and moderators")
    link.add_argument("room")
    record.add_fhir_options(link, required=True)
    record.add_patient_options(link, "patient-")
    link.set_defaults(run=record.room_link_patient)
    show = rooms.add_parser("show", help="a room's state and its patient banner")
    show.add_argument("room")
    show.set_defaults(run=record.room_show)


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
