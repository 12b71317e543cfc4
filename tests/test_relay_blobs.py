"""Encrypted documents on a real relay: chunked and resumed uploads, ranges, access, limits, GC."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import socket
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from crypto.document import decrypt_stream, encrypt_stream
from protocol.encoding import b64encode
from tests.relay_harness import Device, RelayProcess, make_group, new_device, running_relay

CHUNK = 16 * 1024
MAX = 256 * 1024
QUOTA = 2 * MAX
LIMITS = {"blob_chunk_bytes": CHUNK, "blob_max_bytes": MAX, "user_quota_bytes": QUOTA}
FILE_NAME = "IRM-thorax-Dupont-Jean.pdf"


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    with running_relay(tmp_path_factory.mktemp("blobs"), **LIMITS) as r:
        yield r


def _group(creator: Device, *members: Device) -> str:
    async def setup() -> str:
        await creator.connect()
        try:
            return await make_group(creator, list(members))
        finally:
            await creator.close()

    return asyncio.run(setup())


def _create(c: httpx.Client, gid: str, data: bytes, sha256: bytes | None = None) -> str:
    r = c.post("/v1/blobs", json={"group_id": gid, "size": len(data),
                                  "sha256": b64encode(sha256 or hashlib.sha256(data).digest())})
    assert r.status_code == 201, r.text
    assert r.json()["stored"] == 0 and r.json()["chunk_size"] == CHUNK
    return r.json()["blob_id"]


def _put(c: httpx.Client, blob_id: str, offset: int, chunk: bytes) -> httpx.Response:
    return c.put(f"/v1/blobs/{blob_id}/content", params={"offset": offset}, content=chunk,
                 headers={"content-type": "application/octet-stream"})


def _upload(c: httpx.Client, blob_id: str, data: bytes, start: int = 0) -> httpx.Response:
    """Send ``data[start:]`` chunk by chunk; the last response."""
    for offset in range(start, len(data), CHUNK):
        r = _put(c, blob_id, offset, data[offset:offset + CHUNK])
        assert r.status_code == 200, r.text
        assert r.json()["stored"] == min(offset + CHUNK, len(data))
    return r


def _problem(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code
    return r.json().get("detail", "")


def _blob_file(relay: RelayProcess, name: str) -> Path:
    return relay.data / "blobs" / name


def test_upload_in_chunks_then_members_download_it(relay):
    alice, bob, carol = new_device(relay), new_device(relay), new_device(relay)
    gid = _group(alice, bob)
    marker = b"compte rendu: opacite lobaire inferieure droite " * 1200
    ciphertext = io.BytesIO()
    key = encrypt_stream(io.BytesIO(marker), ciphertext, chunk_size=4096)
    data = ciphertext.getvalue()
    assert len(data) > 3 * CHUNK
    with alice.http() as c:
        blob_id = _create(c, gid, data, key.ciphertext_sha256)
        done = _upload(c, blob_id, data).json()
    assert done == {"blob_id": blob_id, "size": len(data), "stored": len(data),
                    "complete": True, "chunk_size": CHUNK}
    with bob.http() as c:
        assert c.get(f"/v1/blobs/{blob_id}").json()["complete"] is True
        r = c.get(f"/v1/blobs/{blob_id}/content")
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-length"] == str(len(data))
    assert hashlib.sha256(r.content).digest() == key.ciphertext_sha256
    plain = io.BytesIO()
    decrypt_stream(io.BytesIO(r.content), plain, key.key, expected_hash=key.ciphertext_sha256)
    assert plain.getvalue() == marker
    # not a member of the group: the blob does not exist
    with carol.http() as c:
        _problem(c.get(f"/v1/blobs/{blob_id}/content"), 404, "not_found")
        _problem(c.get(f"/v1/blobs/{blob_id}"), 404, "not_found")
        _problem(c.post("/v1/blobs", json={"group_id": gid, "size": 10,
                                           "sha256": b64encode(bytes(32))}),
                 403, "not_a_member")
    # a member who did not upload it may not write to it
    with bob.http() as c:
        _problem(_put(c, blob_id, len(data), b""), 403, "forbidden")
    # on disk: exactly the client's ciphertext, under its final name
    assert _blob_file(relay, blob_id).read_bytes() == data
    assert not _blob_file(relay, blob_id + ".part").exists()
    # in the database: no file name, no type, no content, and only metadata columns
    db = relay.data / "relay.db"
    stored = b"".join(p.read_bytes() for p in (db, db.with_name("relay.db-wal")) if p.exists())
    for secret in (FILE_NAME.encode(), b"application/pdf", marker[:40], data[100:140]):
        assert secret not in stored
    with sqlite3.connect(db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(blobs)")}
        events = [row[0] for row in conn.execute(
            "SELECT event FROM audit WHERE details LIKE ? ORDER BY seq", (f"%{blob_id}%",))]
    assert columns == {"id", "group_id", "recipient_device", "uploader_user", "uploader_device",
                       "size", "sha256", "stored", "complete", "created_at", "completed_at"}
    assert events == ["blob_upload_started", "blob_upload_completed", "blob_downloaded"]


def _drop_mid_chunk(relay: RelayProcess, dev: Device, blob_id: str, offset: int) -> None:
    """Send half of a chunk, then lose the connection."""
    head = (f"PUT /v1/blobs/{blob_id}/content?offset={offset} HTTP/1.1\r\n"
            f"host: 127.0.0.1\r\nauthorization: Bearer {dev.token}\r\n"
            f"content-type: application/octet-stream\r\ncontent-length: {CHUNK}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", relay.port)) as s:
        s.sendall(head.encode() + os.urandom(CHUNK // 2))
    time.sleep(0.2)


def test_upload_resumes_after_a_dropped_connection(relay):
    alice, bob = new_device(relay), new_device(relay)
    gid = _group(alice, bob)
    data = os.urandom(4 * CHUNK + 123)
    with alice.http() as c:
        blob_id = _create(c, gid, data)
        _upload(c, blob_id, data[:2 * CHUNK])
    _drop_mid_chunk(relay, alice, blob_id, 2 * CHUNK)
    with bob.http() as c:
        _problem(c.get(f"/v1/blobs/{blob_id}/content"), 409, "blob_incomplete")
    with alice.http() as c:  # a new connection asks where to resume
        status = c.get(f"/v1/blobs/{blob_id}").json()
        assert status["stored"] == 2 * CHUNK and status["complete"] is False
        detail = _problem(_put(c, blob_id, 0, data[:CHUNK]), 409, "blob_offset_mismatch")
        assert str(2 * CHUNK) in detail
        assert _upload(c, blob_id, data, start=status["stored"]).json()["complete"] is True
    with bob.http() as c:
        assert c.get(f"/v1/blobs/{blob_id}/content").content == data


def test_range_requests(relay):
    alice = new_device(relay)
    gid = _group(alice)
    data = os.urandom(1000)
    with alice.http() as c:
        blob_id = _create(c, gid, data)
        _upload(c, blob_id, data)
        url = f"/v1/blobs/{blob_id}/content"
        for header, start, end in (("bytes=0-9", 0, 10), ("bytes=-100", 900, 1000),
                                   ("bytes=990-", 990, 1000), ("bytes=995-5000", 995, 1000)):
            r = c.get(url, headers={"range": header})
            assert r.status_code == 206, header
            assert r.content == data[start:end]
            assert r.headers["content-range"] == f"bytes {start}-{end - 1}/1000"
        for header in ("bytes=1000-", "bytes=-0", "bytes=0-1,5-9", "items=0-1", "bytes=5-2"):
            _problem(c.get(url, headers={"range": header}), 416, "range_not_satisfiable")


def test_size_chunk_and_quota_limits(relay):
    alice = new_device(relay)
    gid = _group(alice)
    with alice.http() as c:
        big = {"group_id": gid, "size": MAX + 1, "sha256": b64encode(bytes(32))}
        _problem(c.post("/v1/blobs", json=big), 413, "too_large")
        _problem(c.post("/v1/blobs", json={**big, "size": 10, "sha256": b64encode(bytes(31))}),
                 422, "validation_failed")
        data = os.urandom(CHUNK + 2048)
        blob_id = _create(c, gid, data)
        _problem(_put(c, blob_id, 0, data[:CHUNK + 1]), 413, "too_large")  # the relay's check
        _problem(_put(c, blob_id, 0, data), 413, "too_large")  # refused before it is read
        _problem(_put(c, blob_id, 0, b""), 422, "validation_failed")
        _upload(c, blob_id, data[:CHUNK])
        _problem(_put(c, blob_id, CHUNK, os.urandom(4096)), 413, "too_large")  # past the size
        # quota: declared sizes count, complete or not
        _create(c, gid, os.urandom(MAX))
        left = QUOTA - MAX - len(data)
        _create(c, gid, os.urandom(left))
        _problem(c.post("/v1/blobs", json={**big, "size": 1}), 413, "quota_exceeded")


def test_hash_mismatch_discards_the_blob(relay):
    alice = new_device(relay)
    gid = _group(alice)
    data = os.urandom(CHUNK + 10)
    with alice.http() as c:
        blob_id = _create(c, gid, data, hashlib.sha256(b"something else").digest())
        _upload(c, blob_id, data[:CHUNK])
        _problem(_put(c, blob_id, CHUNK, data[CHUNK:]), 422, "blob_hash_mismatch")
        _problem(c.get(f"/v1/blobs/{blob_id}"), 404, "not_found")
    assert not _blob_file(relay, blob_id).exists()
    assert not _blob_file(relay, blob_id + ".part").exists()


def test_abandoned_and_unreferenced_blobs_are_collected(tmp_path):
    with running_relay(tmp_path, incomplete_blob_ttl_hours=1 / 3600, **LIMITS) as relay:
        alice, carol = new_device(relay), new_device(relay)
        lonely, kept = _group(alice), _group(carol)
        data = os.urandom(3000)
        with alice.http() as c:
            unreferenced = _create(c, lonely, data)
            _upload(c, unreferenced, data)
            abandoned = _create(c, lonely, data)
            assert _put(c, abandoned, 0, data[:1000]).status_code == 200
        with carol.http() as c:
            live = _create(c, kept, data)
            _upload(c, live, data)
        with alice.http() as c:  # the group's only member goes: nobody can fetch its blobs
            assert c.delete(f"/v1/devices/{alice.device_id}").status_code == 204
        assert _blob_file(relay, abandoned + ".part").exists()
        deadline = time.time() + 30
        while time.time() < deadline:
            with sqlite3.connect(relay.data / "relay.db") as conn:
                left = {row[0] for row in conn.execute("SELECT id FROM blobs")}
            if left == {live}:
                break
            time.sleep(0.5)
        assert left == {live}
        assert sorted(p.name for p in (relay.data / "blobs").iterdir()) == [live]
        with carol.http() as c:
            assert c.get(f"/v1/blobs/{live}/content").content == data
