"""Linking a second device of a user with engines against the real relay, and its history.

The archive format and its import are also exercised on their own against real SQLCipher
files (edits, recalls, receipts and attachments, which the engines' exchange does not need).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from nacl.public import PublicKey, SealedBox

from app.client.engine import Engine
from app.client.events import MessageReceived
from app.client.linking import LinkError, LinkRequest, from_archive, to_archive
from app.client.relay_api import RelayClient, RelayError
from crypto.document import DocumentKey
from protocol.problems import Code
from relay import totp
from storage.attachments import Attachment
from storage.custody import MemoryCustody
from storage.history import HistoryStore
from storage.messages import MessageRef, NewMessage, Priority
from storage.receipts import Receipt
from storage.rooms import RoomKind
from storage.status import MessageStatus
from tests.engine_support import Watched, enroll, until
from tests.relay_harness import RelayProcess
from tests.storage_support import open_store, patient_room
from tests.test_cli_client import ENV, LIAISON, liaison

HISTORY = 500
MARKER = "LINKMARK-7f3a"  # must never reach the relay in clear
ROOM_NAME = "Chambre 14 LINKMARK"


def _totp(engine: Engine) -> str:
    assert engine.totp_uri is not None
    return totp.code_at(totp.b32_secret(engine.totp_uri), int(time.time() // totp.STEP))


def _all(engine: Engine, room_id: str) -> list[tuple[MessageRef, str, str | None]]:
    return [(m.ref, m.sender_user, m.body) for m in engine.messages(room_id, limit=100_000)]


async def _link(relay: RelayProcess, approver: Watched, profile: Path,
                custody: MemoryCustody) -> tuple[LinkRequest, Engine]:
    """A new device of the approver's user, linked, started, not yet given its history."""
    request = await Engine.link(profile, relay.url, custody, device_name="second phone")
    engine, approved = await asyncio.gather(
        request.complete(timeout=60),
        approver.engine.approve_link(request.code, _totp(approver.engine), timeout=60))
    assert approved.device.id == engine.device_id
    assert engine.user_id == approver.engine.user_id
    await engine.start()
    return request, engine


def _history_blob(relay: RelayProcess) -> tuple[str, bytes]:
    with sqlite3.connect(relay.data / "relay.db") as conn:
        blob_id, box_key = conn.execute(
            "SELECT history_blob, box_key FROM device_links WHERE history_blob IS NOT NULL"
        ).fetchone()
    return blob_id, box_key


@pytest.mark.asyncio
async def test_linked_device_joins_every_room_and_receives_the_history_once(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    bob = await enroll(relay, tmp_path, "bob", custody)
    linked: Engine | None = None
    try:
        shared = await alice.engine.create_room(RoomKind.GROUP, ROOM_NAME, [bob.engine.user_id])
        own = await alice.engine.create_room(RoomKind.GROUP, "Notes LINKMARK", [])
        await until(lambda: any(r.id == shared for r in bob.engine.rooms()))
        for i in range(HISTORY):
            await bob.engine.send_text(shared, f"{MARKER} dose {i}", urgent=i % 100 == 0)
        await until(lambda: len(_all(alice.engine, shared)) == HISTORY, timeout=60)
        mine = await alice.engine.send_text(own, f"{MARKER} note")
        await alice.engine.edit(mine, f"{MARKER} note, corrected")
        wrong = await alice.engine.send_text(shared, f"{MARKER} wrong patient")
        await alice.engine.recall(wrong)
        await until(lambda: alice.engine.unsent() == 0)

        request, linked = await _link(relay, alice, tmp_path / "alice2", custody)
        new = Watched(linked)
        added = await linked.receive_history(request, timeout=30)

        assert {r.id for r in linked.rooms()} == {shared, own}
        assert added == HISTORY + 2
        for room in (shared, own):
            assert _all(linked, room) == _all(alice.engine, room)
        note = linked.find_message(mine.client_id)
        assert note.body == f"{MARKER} note, corrected" and note.edited_at is not None
        recalled = linked.find_message(wrong.client_id)
        assert recalled.body is None and recalled.recalled_at is not None
        urgent = [m for m in linked.messages(shared, limit=100_000)
                  if m.priority is Priority.URGENT]
        assert len(urgent) == HISTORY // 100

        # exactly once: the same archive again, or live delivery alongside, adds nothing
        assert await linked.receive_history(request, timeout=10) == 0
        assert len(_all(linked, shared)) == HISTORY + 1
        after = await bob.engine.send_text(shared, f"{MARKER} after the link")
        event = await new.next(MessageReceived)
        assert event.message.ref == after
        assert len(_all(linked, shared)) == HISTORY + 2

        # only the new device may fetch the archive; the relay holds no plaintext of it
        blob_id, _ = _history_blob(relay)
        for other in (bob.engine, alice.engine):
            async with RelayClient(relay.url) as client:
                await client.login(other.device_id, other.account.signature_private_key)
                with pytest.raises(RelayError) as refused:
                    [piece async for piece in client.download_blob(blob_id)]
                assert refused.value.code is Code.NOT_FOUND
        for path in relay.data.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert MARKER.encode() not in content, path
                assert ROOM_NAME.encode() not in content, path
    finally:
        for engine in (alice.engine, bob.engine, linked):
            if engine is not None:
                await engine.stop()


@pytest.mark.asyncio
async def test_a_linked_device_stopped_before_its_history_fetches_it_when_next_started(
        relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    linked: Engine | None = None
    try:
        room = await alice.engine.create_room(RoomKind.GROUP, "Notes", [])
        for i in range(20):
            await alice.engine.send_text(room, f"{MARKER} relève {i}")
        request, engine = await _link(relay, alice, tmp_path / "alice2", custody)
        await engine.stop()  # the app closed (or the phone died) before the history came
        linked = Engine.open(tmp_path / "alice2", custody)
        await linked.start()
        await until(lambda: linked is not None and len(_all(linked, room)) == 20, timeout=60)
        assert _all(linked, room) == _all(alice.engine, room)
        await linked.stop()
        linked = Engine.open(tmp_path / "alice2", custody)  # done: not fetched again
        assert linked._history_pending is None
        await linked.start()
        assert await linked.receive_history(request, timeout=10) == 0
    finally:
        await alice.engine.stop()
        if linked is not None:
            await linked.stop()


@pytest.mark.asyncio
async def test_forged_or_tampered_history_is_refused(relay, tmp_path):
    """The relay knows the new device's X25519 key, so it could seal an archive of its own:
    the approver's signature inside the sealed key is what the new device trusts."""
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    linked: Engine | None = None
    try:
        room = await alice.engine.create_room(RoomKind.GROUP, ROOM_NAME, [])
        await alice.engine.send_text(room, f"{MARKER} real")
        request, linked = await _link(relay, alice, tmp_path / "alice2", custody)
        blob_id, box_key = _history_blob(relay)
        with sqlite3.connect(relay.data / "relay.db") as conn:
            (sealed,) = conn.execute("SELECT history_key FROM device_links").fetchone()
            forged = SealedBox(PublicKey(box_key)).encrypt(os.urandom(128))
            conn.execute("UPDATE device_links SET history_key = ?", (forged,))
        with pytest.raises(LinkError, match="not signed"):
            await linked.receive_history(request, timeout=10)
        with sqlite3.connect(relay.data / "relay.db") as conn:
            conn.execute("UPDATE device_links SET history_key = ?", (sealed,))
        blob = relay.data / "blobs" / blob_id
        original = blob.read_bytes()
        blob.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # tampered at rest
        with pytest.raises(LinkError, match="unreadable"):
            await linked.receive_history(request, timeout=10)
        assert linked.messages(room) == []  # refused archives store nothing
        blob.write_bytes(original)
        assert await linked.receive_history(request, timeout=10) == 1  # and can be retried
    finally:
        for engine in (alice.engine, linked):
            if engine is not None:
                await engine.stop()


@pytest.mark.asyncio
async def test_an_expired_or_unapproved_link_fails_clearly(relay, tmp_path):
    request = await Engine.link(tmp_path / "p", relay.url, MemoryCustody(), device_name="x")
    with pytest.raises(LinkError, match="not approved"):
        await request.complete(timeout=0.5)
    with sqlite3.connect(relay.data / "relay.db") as conn:
        conn.execute("UPDATE device_links SET expires_at = 0")
    with pytest.raises(LinkError, match="expired"):
        await request.complete(timeout=5)
    assert not (tmp_path / "p" / "account").exists()
    assert await request.withdraw()  # expired: nothing left to withdraw, and no error


@pytest.mark.asyncio
async def test_a_withdrawn_link_cannot_be_approved_an_approved_one_cannot_be_withdrawn(
        relay, tmp_path):
    approver = await enroll(relay, tmp_path, "alice", MemoryCustody())
    try:
        given_up = await Engine.link(tmp_path / "p1", relay.url, MemoryCustody(), device_name="x")
        assert await given_up.withdraw()
        with pytest.raises(RelayError, match="link_invalid"):
            await approver.engine.approve_link(given_up.code, _totp(approver.engine), timeout=5)
        request, engine = await _link(relay, approver, tmp_path / "p2", MemoryCustody())
        assert not await request.withdraw()  # too late: the device exists
        await engine.stop()
    finally:
        await approver.engine.stop()


def test_archive_round_trip_keeps_edits_recalls_receipts_and_attachments(tmp_path):
    source, _ = open_store(tmp_path / "a.db")
    target, _ = open_store(tmp_path / "b.db")
    room = patient_room()
    for store in (source, target):
        store.rooms.save(room)
    key = DocumentKey(os.urandom(32), os.urandom(32), 1234)
    doc = Attachment(blob_id="blob-1", file_name="scanner.pdf", media_type="application/pdf",
                     key=key)
    refs = [MessageRef("dev-b", f"c{i}") for i in range(4)]
    for i, ref in enumerate(refs):
        source.messages.add_incoming(NewMessage(
            ref=ref, room_id=room.id, sender_user="u-bob", body=f"text {i}", local_ts=10.0 + i,
            server_ts=20.0 + i, reply_to=refs[0] if i == 1 else None,
            attachments=(doc,) if i == 2 else ()))
    source.messages.edit(refs[0], edit=MessageRef("dev-b", "e1"), editor_user="u-bob",
                         body="text 0, corrected", at=30.0)
    source.messages.recall(refs[3], recaller_user="u-bob", at=31.0)
    source.receipts.add(refs[1], Receipt("u-carol", MessageStatus.READ, 32.0))

    archive = to_archive([room.id], HistoryStore(source.db).export([room.id]))
    wire = archive.model_dump_json()
    parsed = type(archive).model_validate_json(wire)
    assert from_archive(parsed, {"another room"}) == []
    entries = from_archive(parsed, {room.id})
    assert HistoryStore(target.db).import_(entries) == 4
    assert HistoryStore(target.db).import_(entries) == 0  # exactly once

    def view(store):  # type: ignore[no-untyped-def]
        return [(m.ref, m.body, m.reply_to, m.attachments, m.edited_at, m.recalled_at, m.status)
                for m in store.messages.latest(room.id, limit=100)]

    assert view(target) == view(source)
    assert target.messages.versions(refs[0]) == source.messages.versions(refs[0])
    assert [v.body for v in target.messages.versions(refs[0])] == ["text 0"]
    assert target.receipts.of_message(refs[1]) == [Receipt("u-carol", MessageStatus.READ, 32.0)]
    assert target.messages.get(refs[3]).body is None
    source.close()
    target.close()


def test_cli_link_start_and_approve(relay, tmp_path):
    alice, phone = tmp_path / "alice", tmp_path / "phone"
    secret_file = tmp_path / "alice.totp"
    liaison(alice, "enroll", "--relay", relay.url, "--code", relay.invite(relay.add_user("Alice")),
            "--totp-secret-out", str(secret_file))
    room = liaison(alice, "room", "create", "--kind", "group", "--name", ROOM_NAME).split()[-1]
    liaison(alice, "send", "--", room, f"{MARKER} by the CLI")

    start = subprocess.Popen([str(LIAISON), "--profile", str(phone), "link", "start",
                              "--relay", relay.url, "--wait", "60"],
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert start.stdout is not None
        code = start.stdout.readline().split("link approve ")[1].split()[0]
        b32 = secret_file.read_text().strip()
        secret = base64.b32decode(b32 + "=" * (-len(b32) % 8))
        now = totp.code_at(secret, int(time.time() // totp.STEP))
        approved = liaison(alice, "link", "approve", code, "--totp", now)
        out, err = start.communicate(timeout=90)
    finally:
        if start.poll() is None:
            start.kill()
    assert start.returncode == 0, err
    assert approved.startswith("linked ")
    assert "history received: 1 messages in 1 rooms" in out
    shown = json.loads(liaison(phone, "messages", "--json", "--", room))
    assert [m["body"] for m in shown] == [f"{MARKER} by the CLI"]
    refused = subprocess.run([str(LIAISON), "--profile", str(alice), "link", "approve", code,
                              "--totp", now], env=ENV, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 1 and "link_invalid" in refused.stderr
    typo = subprocess.run([str(LIAISON), "--profile", str(alice), "link", "approve", "ABC",
                           "--totp", now], env=ENV, capture_output=True, text=True, timeout=60)
    assert typo.returncode == 1 and "8 letters or digits" in typo.stderr
    assert "Traceback" not in typo.stderr
