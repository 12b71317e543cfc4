"""Documents end to end: two real engines, the real relay process, a proxy that drops them."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest

from app.client.documents import DocumentError, Retry, check, sniff
from app.client.engine import Engine
from app.client.events import MessageReceived, RoomChanged, TransferProgress
from storage.custody import MemoryCustody
from storage.messages import MessageKind
from storage.rooms import RoomKind
from storage.status import MessageStatus
from tests.engine_support import Watched, until
from tests.relay_harness import RelayProcess, running_relay
from tests.tcp_proxy import TcpProxy
from tests.test_cli_client import ENV, LIAISON, liaison

MB = 1024 * 1024


async def _enroll(relay: RelayProcess, url: str, tmp_path: Path, name: str,
                  custody: MemoryCustody) -> Watched:
    """A new user's device talking to the relay at ``url`` (the relay itself, or a proxy)."""
    engine = await Engine.enroll(tmp_path / name, url, relay.invite(relay.add_user(name)), custody)
    await engine.start()
    return Watched(engine)


async def _room(alice: Watched, bob: Watched) -> str:
    room_id = await alice.engine.create_room(RoomKind.GROUP, "Imagerie", [bob.engine.user_id])
    await bob.next(RoomChanged)
    return room_id


def _monotonic_to_total(progress: list[tuple[int, int]]) -> int:
    """Check callbacks only move forward and end at the total; return the total."""
    assert progress
    dones = [done for done, _ in progress]
    totals = {total for _, total in progress}
    assert dones == sorted(dones) and len(totals) == 1
    total = totals.pop()
    assert dones[-1] == total and dones[0] > 0
    return total


def _cached(profile: Path) -> list[Path]:
    """Every file of a profile's document cache, staging included."""
    return [p for p in (profile / "documents").rglob("*") if p.is_file()]


def _clear_in(roots: list[Path], secrets_: list[bytes]) -> list[tuple[Path, bytes]]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found += [(path, s) for s in secrets_ if s in data or s in str(path).encode()]
    return found


def _transfer_events(watched: Watched) -> list[TransferProgress]:
    events = []
    while not watched.events.empty():
        if isinstance(event := watched.events.get_nowait(), TransferProgress):
            events.append(event)
    return events


@pytest.mark.asyncio
async def test_a_20_mb_document_survives_dropped_connections(relay, tmp_path):
    custody = MemoryCustody()
    marker = secrets.token_hex(12).encode()
    name = f"scanner-thorax-{secrets.token_hex(6)}.pdf"
    caption = f"Scanner du lit 12 {secrets.token_hex(6)}"
    size = 20 * MB
    body = b"%PDF-1.7\n" + os.urandom(size // 2) + marker
    source = tmp_path / "outside" / name
    source.parent.mkdir()
    source.write_bytes(body + os.urandom(size - len(body)))

    with TcpProxy(relay.port) as proxy:
        alice = await _enroll(relay, proxy.url, tmp_path, "alice", custody)
        bob = await _enroll(relay, proxy.url, tmp_path, "bob", custody)
        try:
            room_id = await _room(alice, bob)
            _transfer_events(alice)

            uploads: list[tuple[int, int]] = []
            before = proxy.uploaded
            proxy.cut_after(size // 2)
            ref = await alice.engine.send_file(
                room_id, source, caption=caption, on_progress=lambda d, t: uploads.append((d, t))
            )
            sent = proxy.uploaded - before
            total = _monotonic_to_total(uploads)
            assert size < total < size + size // 100  # ciphertext: the file plus tags
            assert proxy.cuts == 1
            # Resumed where the relay stopped: at most the chunk in flight (1 MiB) went twice;
            # starting again would have sent half the file twice.
            assert total < sent < total + 2 * MB < 2 * size
            events = _transfer_events(alice)
            assert [(e.done, e.total) for e in events] == uploads
            assert {(e.room.id, e.message_ref, e.direction) for e in events} == {
                (room_id, ref, "upload")
            }

            mine = alice.engine.messages(room_id)[-1]
            assert mine.ref == ref and mine.kind is MessageKind.DOCUMENT and mine.body == caption
            await until(lambda: alice.engine.messages(room_id)[-1].status >= MessageStatus.SENT)

            received = (await bob.next(MessageReceived, timeout=20)).message
            assert received.ref == ref and received.kind is MessageKind.DOCUMENT
            assert received.body == caption
            (item,) = received.attachments
            assert (item.file_name, item.media_type) == (name, "application/pdf")
            assert item.key.plaintext_size == size
            assert _cached(tmp_path / "bob") == []  # nothing downloaded until asked

            downloads: list[tuple[int, int]] = []
            before = proxy.downloaded
            proxy.cut_after(total // 2, downstream=True)
            await bob.engine.fetch_file(ref, on_progress=lambda d, t: downloads.append((d, t)))
            assert proxy.cuts == 2 and total < proxy.downloaded - before < total + MB
            assert _monotonic_to_total(downloads) == total
            assert [e.direction for e in _transfer_events(bob)] == ["download"] * len(downloads)

            fetched = len(downloads)
            await bob.engine.fetch_file(ref, on_progress=lambda d, t: downloads.append((d, t)))
            assert len(downloads) == fetched  # cached: not downloaded again

            exported = tmp_path / "outside" / "bob.pdf"
            assert await bob.engine.export_file(ref, exported) == size
            assert exported.read_bytes() == source.read_bytes()
            mine_out = tmp_path / "outside" / "alice.pdf"  # the sender's copy is cached already
            assert await alice.engine.export_file(ref, mine_out) == size
            assert mine_out.read_bytes() == source.read_bytes()
        finally:
            await alice.engine.stop()
            await bob.engine.stop()
    relay.stop()
    roots = [relay.data, tmp_path / "alice", tmp_path / "bob"]
    assert sum(len(_cached(p)) for p in roots[1:]) == 2  # each profile holds the ciphertext
    assert _clear_in(roots, [marker, name.encode(), caption.encode()]) == []


@pytest.mark.asyncio
async def test_refused_documents_send_nothing(relay, tmp_path):
    custody = MemoryCustody()
    alice = await _enroll(relay, relay.url, tmp_path, "alice", custody)
    bob = await _enroll(relay, relay.url, tmp_path, "bob", custody)
    outside = tmp_path / "outside"
    outside.mkdir()
    try:
        room_id = await _room(alice, bob)
        files = {
            "compte-rendu.pdf": b"\x7fELF\x02\x01\x01\x00" + os.urandom(4096),  # a program
            "irm.dcm": b"PK\x03\x04\x14\x00\x00\x00" + os.urandom(4096),  # a ZIP archive
            "notes.txt": "Patient stable, hémoglobine 9.1\n".encode() * 100 + b"\x00\x01",
        }
        for file_name, data in files.items():
            (outside / file_name).write_bytes(data)
            refused = f"{re.escape(file_name)} may not be shared: only PDF"
            with pytest.raises(DocumentError, match=refused):
                await alice.engine.send_file(room_id, outside / file_name)

        alice.engine.max_document_bytes = MB
        big = outside / "long.txt"
        big.write_bytes(b"a" * (MB + 1))
        with pytest.raises(DocumentError, match=rf"long\.txt is {MB + 1} bytes: documents are "
                                                f"limited to {MB} bytes"):
            await alice.engine.send_file(room_id, big)
        (outside / "empty.pdf").write_bytes(b"")
        with pytest.raises(DocumentError, match=r"empty\.pdf is empty"):
            await alice.engine.send_file(room_id, outside / "empty.pdf")
        with pytest.raises(DocumentError, match=r"cannot read .*missing\.pdf"):
            await alice.engine.send_file(room_id, outside / "missing.pdf")

        assert alice.engine.messages(room_id) == [] and alice.engine.unsent() == 0
        assert list((relay.data / "blobs").iterdir()) == []
        assert _cached(tmp_path / "alice") == []

        # The relay gone: the upload gives up after the time allowed, keeping nothing.
        alice.engine.transfer_retry = Retry(give_up_after=1.0, base=0.05, cap=0.2)
        ok = outside / "ok.txt"
        ok.write_text("Résultats normaux\n", "utf-8")
        relay.stop()
        with pytest.raises(DocumentError, match="the upload abandoned: nothing got through"):
            await alice.engine.send_file(room_id, ok)
        assert alice.engine.messages(room_id) == [] and _cached(tmp_path / "alice") == []
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


@pytest.mark.asyncio
async def test_a_tampered_document_is_refused_and_not_kept(relay, tmp_path):
    custody = MemoryCustody()
    alice = await _enroll(relay, relay.url, tmp_path, "alice", custody)
    bob = await _enroll(relay, relay.url, tmp_path, "bob", custody)
    try:
        room_id = await _room(alice, bob)
        source = tmp_path / "cr.pdf"
        source.write_bytes(b"%PDF-1.4\n" + os.urandom(300_000))
        ref = await alice.engine.send_file(room_id, source)
        (item,) = (await bob.next(MessageReceived)).message.attachments
        # a document without a caption is listed by its file name, not as a recalled message
        assert [o.last_preview for o in bob.engine.room_overview()] == ["📎 cr.pdf"]
        blob = relay.data / "blobs" / item.blob_id
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0x01
        blob.write_bytes(bytes(data))

        with pytest.raises(DocumentError, match="does not match the hash its message carries"):
            await bob.engine.fetch_file(ref)
        assert _cached(tmp_path / "bob") == []
        out = tmp_path / "bob.pdf"
        with pytest.raises(DocumentError, match=r"cr\.pdf is not downloaded yet"):
            await bob.engine.export_file(ref, out)
        assert not out.exists()

        # A cached copy damaged on the sender's disk: nothing exported, the copy dropped.
        (cached,) = _cached(tmp_path / "alice")
        cached.write_bytes(bytes(data))
        with pytest.raises(DocumentError, match=r"cached copy of cr\.pdf is damaged"):
            await alice.engine.export_file(ref, out)
        assert not out.exists() and _cached(tmp_path / "alice") == []
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


@pytest.mark.parametrize(("head", "media_type"), [
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
    (b"GIF89a\x01\x00\x01\x00", "image/gif"),
    (b"GIF87a\x01\x00\x01\x00", "image/gif"),
    (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"II*\x00\x08\x00\x00\x00", "image/tiff"),
    (b"MM\x00*\x00\x00\x00\x08", "image/tiff"),
    (b"\x00" * 128 + b"DICM\x02\x00\x00\x00", "application/dicom"),
    ("Hémoglobine 9,1 g/dL\r\n\tà contrôler\n".encode(), "text/plain"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),  # a RIFF that is not WebP
    (b"\x7fELF\x02\x01\x01\x00", None),
    (b"PK\x03\x04\x14\x00\x00\x00", None),
    (b"caf\xc3", None),  # UTF-8 cut in the middle of a character, at the end of the file
    (b"latin-1 \xe9t\xe9", None),
])
def test_types_come_from_the_content(head, media_type):
    assert sniff(head, whole=True) == media_type


def test_a_text_head_does_not_vouch_for_the_rest(tmp_path):
    path = tmp_path / "notes.txt"
    text = "Compte rendu opératoire\n".encode() * 1000
    path.write_bytes(text)
    with path.open("rb") as f:
        assert check(f, path.name, MB) == "text/plain" and f.tell() == 0
    path.write_bytes(text + b"\x7fELF\x00\x00")
    with path.open("rb") as f, pytest.raises(DocumentError, match="may not be shared"):
        check(f, path.name, MB)


def test_the_cli_exchanges_a_document(tmp_path):
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    source = tmp_path / "ecg.png"
    source.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(3 * MB))
    with running_relay(tmp_path) as relay:
        for profile in (alice, bob):
            user_id = relay.add_user(profile.name)
            liaison(profile, "enroll", "--relay", relay.url, "--code", relay.invite(user_id))
        bob_id = liaison(bob, "whoami").split()[1]
        room = liaison(alice, "room", "create", "--kind", "group", "--name", "Cardio",
                       "--member", bob_id).split()[-1]
        sent = liaison(alice, "send-file", "--caption", "ECG de 8 h", "--", room, str(source))
        assert sent.split()[0] == "sent"

        liaison(bob, "sync", "--wait", "3")
        (shown,) = json.loads(liaison(bob, "messages", "--json", "--", room))
        assert shown["id"] == sent.split()[-1] and shown["body"] == "ECG de 8 h"
        assert shown["documents"] == [
            {"name": "ecg.png", "type": "image/png", "size": source.stat().st_size}
        ]
        out = tmp_path / "received.png"
        fetched = subprocess.run([str(LIAISON), "--profile", str(bob), "fetch-file", shown["id"],
                                  str(out)], env=ENV, capture_output=True, text=True, timeout=120)
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.stdout.split()[:2] == ["saved", str(source.stat().st_size)]
        assert "downloaded 100%" in fetched.stderr
        assert out.read_bytes() == source.read_bytes()

        program = tmp_path / "rapport.pdf"
        program.write_bytes(b"\x7fELF\x02\x01\x01\x00" + os.urandom(1000))
        refused = subprocess.run([str(LIAISON), "--profile", str(alice), "send-file", "--", room,
                                  str(program)], env=ENV, capture_output=True, text=True,
                                 timeout=120)
        assert refused.returncode == 1
        assert "liaison: error: rapport.pdf may not be shared: only PDF" in refused.stderr
