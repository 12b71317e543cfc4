"""The ``liaison`` commands: each one opens the profile, does one thing, and closes it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from app.cli.custody import new_custody, profile_custody, record_custody
from app.client.connection import State
from app.client.engine import Engine, EngineError
from app.client.events import ConnectionChanged, Event, MessageReceived, ReceiptReceived
from app.client.relay_api import RelayClient
from storage.accounts import Account
from storage.messages import Message, MessageRef, Priority
from storage.rooms import RoomKind
from storage.status import MessageStatus

ANSWER_TIMEOUT = 30.0  # seconds to wait for the relay to accept a room or a message


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
    async with _relay(await _stored_account(args.profile)) as relay:
        page = await relay.directory(args.query)
    for user in page.users:
        services = f"  {', '.join(user.services)}" if user.services else ""
        print(f"{user.id}  {user.display_name}  {user.profession.value}{services}")
    return 0


# -- rooms ----------------------------------------------------------------------------------
async def room_create(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                room_id = await engine.create_room(RoomKind(args.kind), args.name, args.member)
        except TimeoutError:
            raise EngineError(f"the relay did not answer within {ANSWER_TIMEOUT:.0f} s") from None
    print(f"Created {args.kind} room {args.name!r}: {room_id}")
    return 0


async def room_list(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=False) as engine:
        for room in engine.rooms():
            print(f"{room.id}  {room.kind.value:<8} {room.name}")
    return 0


# -- messages -------------------------------------------------------------------------------
async def send(args: argparse.Namespace) -> int:
    async with _engine(args.profile, online=True) as engine:
        ref = await engine.send_text(args.room, args.text, urgent=args.urgent)
        status = await _settled_status(engine, args.room, ref)
    if status is MessageStatus.PENDING:
        print("liaison: the relay has not accepted the message yet; the next `liaison sync` "
              "sends it again", file=sys.stderr)
    print(f"{status.name.lower()} {ref.client_id}")
    return 0


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
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while engine.unsent() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        unsent = engine.unsent()
    if unsent:
        print("liaison: the relay has not accepted the acknowledgement yet; the next "
              "`liaison sync` sends it again", file=sys.stderr)
    print(f"acknowledged {args.message}")
    return 0


async def sync(args: argparse.Namespace) -> int:
    states: list[State] = []

    def show(event: Event) -> None:
        if isinstance(event, ConnectionChanged):
            states.append(event.state)
        elif isinstance(event, MessageReceived):
            print(f"[{event.room.name}] {_line(event.message)}")
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
    status = message.status.name.lower()
    return f"{_time(message)}  {message.sender_user}  {status}{urgent}  {message.body or ''}"


def _record(message: Message) -> dict[str, object]:
    return {
        "id": message.ref.client_id,
        "time": _time(message),
        "sender": message.sender_user,
        "sender_device": message.ref.sender_device,
        "status": message.status.name.lower(),
        "urgent": message.priority is Priority.URGENT,
        "body": message.body,
    }


def write_private(path: Path, text: str) -> None:
    """A secret for scripts (the TOTP seed): created readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
