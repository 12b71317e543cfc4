"""The ``liaison`` commands: each one opens the profile, does one thing, and closes it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, urlparse

from app.cli.custody import new_custody, profile_custody, record_custody
from app.client.connection import State
from app.client.engine import Engine, EngineError
from app.client.events import (
    ConnectionChanged,
    Event,
    MessageChanged,
    MessageReceived,
    ReceiptReceived,
    RoomRuleBroken,
)
from app.client.relay_api import RelayClient, RelayError, RelayUnavailable
from storage.accounts import Account
from storage.members import RoomRole
from storage.messages import Message, MessageRef, Priority
from storage.rooms import RoomKind
from storage.status import MessageStatus

ANSWER_TIMEOUT = 30.0  # seconds to wait for the relay to accept a room or a message
T = TypeVar("T")
DOCUMENT_LOOKBACK = 10_000  # messages of each room searched for fetch-file's message id


# -- opening a profile ----------------------------------------------------------------------
@contextlib.asynccontextmanager
async def _engine(profile: Path, *, online: bool) -> AsyncIterator[Engine]:
    engine = Engine.open(profile, profile_custody(profile))
    try:
        if online:
            await engine.start()
        yield engine
    finally:
        await engine.stop()


async def _stored_account(profile: Path) -> Account:
    """The profile's enrolment, for relay calls the engine does not offer."""
    async with _engine(profile, online=False) as engine:
        return engine.account


@contextlib.asynccontextmanager
async def _relay(account: Account) -> AsyncIterator[RelayClient]:
    async with RelayClient(account.relay_url) as relay:
        await relay.login(account.device_id, account.signature_private_key)
        yield relay


# -- account --------------------------------------------------------------------------------
async def enroll(args: argparse.Namespace) -> int:
    name, custody = new_custody(args.profile)
    engine = await Engine.enroll(
        args.profile, args.relay, args.code, custody, device_name=args.device_name
    )
    try:
        record_custody(args.profile, name)
        print(f"Enrolled user {engine.user_id}, device {engine.device_id}; "
              f"database key in {custody.description}")
        if engine.totp_uri is not None:
            print("Set up your authenticator app (needed to add another device):")
            print(engine.totp_uri)
            if args.totp_secret_out is not None:
                secret = parse_qs(urlparse(engine.totp_uri).query)["secret"][0]
                write_private(args.totp_secret_out, secret + "\n")
    finally:
        await engine.stop()
    return 0


async def link_start(args: argparse.Namespace) -> int:
    """Link this new profile to a user: show the code, wait for approval, import history."""
    name, custody = new_custody(args.profile)
    request = await Engine.link(args.profile, args.relay, custody, device_name=args.device_name)
    print(f"On a device you already use, with your authenticator's code: "
          f"liaison link approve {request.code} --totp CODE")
    print(f"The code expires in {request.expires_in // 60} minutes.", flush=True)
    try:
        engine = await request.complete(timeout=args.wait)
    except BaseException:  # not approved in time, or interrupted: this profile's keys go
        with contextlib.suppress(RelayError, RelayUnavailable):
            if not await request.withdraw():
                print("The code was approved meanwhile: revoke that device in the app's "
                      "settings on your other device, or ask an administrator "
                      "(liaison-relay device revoke).", file=sys.stderr)
        raise
    try:
        record_custody(args.profile, name)
        print(f"Linked: user {engine.user_id}, device {engine.device_id}; "
              f"database key in {custody.description}", flush=True)
        await engine.start()
        added = await engine.receive_history(request, timeout=args.wait)
        print(f"history received: {added} messages in {len(engine.rooms())} rooms")
    finally:
        await engine.stop()
    return 0


async def link_approve(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        approved = await engine.approve_link(args.code, args.totp, timeout=args.wait)
    device = approved.device
    print(f"linked {device.id}  {device.name}: added to your rooms, history sent")
    return 0


async def whoami(args: argparse.Namespace) -> int:
    account = await _stored_account(args.profile)
    async with _relay(account) as relay:
        me = await relay.me()
    print(f"user          {me.id}  {me.display_name} ({me.profession.value})")
    print(f"device        {account.device_id}  {account.device_name}")
    print(f"organisation  {account.organisation_name}")
    print(f"relay         {account.relay_url}")
    return 0


async def devices(args: argparse.Namespace) -> int:
    account = await _stored_account(args.profile)
    async with _relay(account) as relay:
        listed = await relay.my_devices()
    for device in listed.devices:
        notes = [n for n, on in (("this device", device.id == account.device_id),
                                 ("revoked", device.revoked)) if on]
        suffix = f"  ({', '.join(notes)})" if notes else ""
        print(f"{device.id}  {device.created_at:%Y-%m-%d %H:%M}  {device.name}{suffix}")
    return 0


async def directory(args: argparse.Namespace) -> int:
    """From the relay, or from the profile's cache of earlier answers when it is out of reach."""
    async with _engine(args.profile, online=False) as engine:
        found = await engine.directory(args.query, limit=args.limit)
    for entry in found:
        services = f"  {', '.join(entry.services)}" if entry.services else ""
        print(f"{entry.user_id}  {entry.display_name}  {entry.profession}{services}")
    return 0


# -- rooms ----------------------------------------------------------------------------------
async def _answered(work: Awaitable[T]) -> T:
    """``work`` (a commit, a new room), given up if the relay does not answer in time."""
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT):
            return await work
    except TimeoutError:
        raise EngineError(f"the relay did not answer within {ANSWER_TIMEOUT:.0f} s") from None


async def room_create(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        room_id = await _answered(
            engine.create_room(RoomKind(args.kind), args.name, args.member,
                               patient=args.patient, retention_days=args.retention_days)
        )
    print(f"Created {args.kind} room {args.name!r}: {room_id}")
    return 0


async def room_list(args: argparse.Namespace) -> int:
    """Rooms awaiting an acknowledgement first, then the most recently active."""
    async with _engine(args.profile, online=False) as engine:
        for line in engine.room_overview():
            room = line.room
            waiting = [f"{n} {what}" for n, what in ((line.unread, "unread"),
                                                     (line.unacknowledged_urgent, "URGENT")) if n]
            replacement = engine.replacement(room.id) if line.unreadable else None
            if replacement is not None:
                waiting.append(f"UNREADABLE here: opened again as {replacement.id}")
            elif line.unreadable:
                waiting.append("UNREADABLE here: see `room reopen`")
            suffix = f"  ({', '.join(waiting)})" if waiting else ""
            print(f"{room.id}  {room.kind.value:<8} {room.name}{suffix}")
    return 0


async def room_invite(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        await _answered(engine.invite(args.room, args.user))
    print(f"invited {' '.join(args.user)}")
    return 0


async def room_remove(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        await _answered(engine.remove(args.room, args.user))
    print(f"removed {args.user}")
    return 0


async def room_leave(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        await _answered(engine.leave(args.room))
    print(f"left {args.room}")
    return 0


async def room_reopen(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        new_id = await _answered(engine.recreate_room(args.room))
    print(f"Opened {args.room} again as a new room: {new_id}")
    return 0


async def room_rename(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        await _answered(engine.update_room(args.room, name=args.name))
    print(f"renamed {args.room}: {args.name}")
    return 0


async def room_role(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        await _answered(engine.set_role(args.room, args.user, RoomRole(args.role)))
    print(f"{args.user} is {args.role}")
    return 0


async def room_archive(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        await _answered(engine.update_room(args.room, archived=not args.undo))
    print(f"{'unarchived' if args.undo else 'archived'} {args.room}")
    return 0


# -- messages -------------------------------------------------------------------------------
async def send(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        ref = await engine.send_text(args.room, args.text, urgent=args.urgent)
        status = await _settled_status(engine, args.room, ref)
    _print_sent(status, ref)
    return 0


def _print_sent(status: MessageStatus, ref: MessageRef) -> None:
    if status is MessageStatus.PENDING:
        print("liaison: the relay has not accepted the message yet; the next `liaison sync` "
              "sends it again", file=sys.stderr)
    print(f"{status.name.lower()} {ref.client_id}")


async def _settled_status(engine: Engine, room_id: str, ref: MessageRef) -> MessageStatus:
    """The message's status once the relay has accepted it, or PENDING after the timeout."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while True:
        status = next((m.status for m in engine.messages(room_id, 100) if m.ref == ref),
                      MessageStatus.PENDING)
        if status is not MessageStatus.PENDING or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.05)


async def ack(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        owed = next((m for m in engine.unacknowledged_urgent() if m.ref.client_id == args.message),
                    None)
        if owed is None:
            raise EngineError(f"no urgent message {args.message} awaits your acknowledgement")
        await engine.acknowledge(owed.ref)
        await _drained(engine, "the acknowledgement")
    print(f"acknowledged {args.message}")
    return 0


async def _drained(engine: Engine, what: str) -> None:
    """Wait for the relay to accept what the outbox holds, or say it will go later."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while engine.unsent() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if engine.unsent():
        print(f"liaison: the relay has not accepted {what} yet; the next `liaison sync` "
              "sends it again", file=sys.stderr)


async def edit(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        await engine.edit(engine.find_message(args.message).ref, args.text)
        await _drained(engine, "the edit")
    print(f"edited {args.message}")
    return 0


async def recall(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        await engine.recall(engine.find_message(args.message).ref)
        await _drained(engine, "the recall")
    print(f"recalled {args.message}")
    return 0


async def search(args: argparse.Namespace) -> int:
    """Cached messages, best match first: room, message id, sender, then the passage found."""
    async with _engine(args.profile, online=False) as engine:
        page = engine.search(args.query, room_id=args.room, limit=args.limit)
    for hit in page.hits:
        passage = "".join(f"[{f.text}]" if f.match else f.text for f in hit.snippet)
        print(f"{hit.room_id}  {hit.ref.client_id}  {hit.sender_user}  {passage}")
    return 0


# -- documents ------------------------------------------------------------------------------
async def send_file(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        ref = await engine.send_file(args.room, args.path, caption=args.caption,
                                     on_progress=_progress("uploaded"))
        status = await _settled_status(engine, args.room, ref)
    _print_sent(status, ref)
    return 0


async def fetch_file(args: argparse.Namespace) -> int:
    """Download the document if this device has not yet, then decrypt it to OUT."""
    if args.out.exists():
        raise EngineError(f"{args.out} exists already: choose another path")
    async with _engine(args.profile, online=True) as engine:
        ref = _document_ref(engine, args.message)
        await engine.fetch_file(ref, on_progress=_progress("downloaded"))
        size = await engine.export_file(ref, args.out)
    print(f"saved {size} bytes to {args.out}")
    return 0


def _document_ref(engine: Engine, message_id: str) -> MessageRef:
    for room in engine.rooms():
        for message in engine.messages(room.id, DOCUMENT_LOOKBACK):
            if message.ref.client_id == message_id and message.attachments:
                return message.ref
    raise EngineError(f"no document message {message_id} among the last {DOCUMENT_LOOKBACK} "
                      "messages of each room")


def _progress(verb: str) -> Callable[[int, int], None]:
    """Progress on stderr, one line rewritten as each percent passes."""
    shown = -1

    def show(done: int, total: int) -> None:
        nonlocal shown
        percent = done * 100 // total
        if percent != shown:
            shown = percent
            print(f"\r{verb} {percent:3d}% ({done} of {total} bytes)",
                  end="\n" if done == total else "", file=sys.stderr, flush=True)

    return show


async def sync(args: argparse.Namespace) -> int:
    states: list[State] = []

    def show(event: Event) -> None:
        if isinstance(event, ConnectionChanged):
            states.append(event.state)
        elif isinstance(event, MessageReceived):
            print(f"[{event.room.name}] {_line(event.message)}")
        elif isinstance(event, MessageChanged):
            print(f"[{event.room.name}] {event.message.ref.client_id} changed: "
                  f"{_line(event.message)}")
        elif isinstance(event, RoomRuleBroken):
            print(f"[{event.room.name}] refused from {event.user_id}: {event.reason}")
        elif isinstance(event, ReceiptReceived):
            print(f"[{event.room.name}] {event.message_ref.client_id} "
                  f"{event.kind.name.lower()} by {event.user_id}")

    async with _engine(args.profile, online=True) as engine:
        engine.subscribe(show)
        await asyncio.sleep(args.wait)
    if State.CONNECTED not in states:
        print(f"liaison: could not connect to the relay within {args.wait} s", file=sys.stderr)
        return 1
    return 0


async def messages(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=False) as engine:
        if args.room not in {room.id for room in engine.rooms()}:
            raise EngineError(f"unknown room {args.room}")
        shown = engine.messages(args.room, args.limit)
    if args.json:
        print(json.dumps([_record(m) for m in shown], ensure_ascii=False, indent=2))
    else:
        for message in shown:
            print(_line(message))
    return 0


def _time(message: Message) -> str:
    at = message.server_ts if message.server_ts is not None else message.local_ts
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")


def _line(message: Message) -> str:
    urgent = " URGENT" if message.priority is Priority.URGENT else ""
    status = message.status.name.lower() + _change_note(message)
    files = "".join(f"[{a.file_name}, {a.key.plaintext_size} bytes] " for a in message.attachments)
    return f"{_time(message)}  {message.sender_user}  {status}{urgent}  {files}{message.body or ''}"


def _change_note(message: Message) -> str:
    if message.recalled_at is not None:
        return " (recalled)"
    return " (edited)" if message.edited_at is not None else ""


def _record(message: Message) -> dict[str, object]:
    return {
        "id": message.ref.client_id,
        "time": _time(message),
        "sender": message.sender_user,
        "sender_device": message.ref.sender_device,
        "status": message.status.name.lower(),
        "urgent": message.priority is Priority.URGENT,
        "body": message.body,
        "edited": message.edited_at is not None,
        "recalled": message.recalled_at is not None,
        "documents": [{"name": a.file_name, "type": a.media_type, "size": a.key.plaintext_size}
                      for a in message.attachments],
    }


def write_private(path: Path, text: str) -> None:
    """A secret for scripts (the TOTP seed): created readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
