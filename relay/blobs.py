"""Encrypted documents: chunked resumable uploads, ranged downloads, garbage collection.

A blob is the client's ciphertext, byte for byte: the relay knows its group (or, for a linked
device's history, its one recipient device), uploader, size and SHA-256, never a file name or
type. An upload appends to ``<id>.part`` at exactly the
stored offset, so a client that lost its connection asks for the status and resumes there.
Once every byte is stored the file is checked against the declared SHA-256 and renamed to
``<id>``. File I/O runs in threads, never inside the writer's transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from weakref import WeakValueDictionary

from sqlalchemy import Row, delete, func, insert, select, update

from protocol import rest
from protocol.problems import Code
from relay.db import blobs, devices
from relay.errors import ProblemError

if TYPE_CHECKING:
    from relay.service import AuthDevice, Relay
    from relay.writer import Tx

READ_SIZE = 1024 * 1024
GC_BATCH = 1000
DEVICE_BLOB_TTL_HOURS = 24.0  # a history archive is fetched right after linking, or never
# One request at a time per blob (a retry racing its own original, two finishing calls).
# Blob ids are random, so one table serves every relay in the process.
_locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()
# One range only; 18 digits keep int() far from its conversion limit.
_RANGE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})")


def _lock(blob_id: str) -> asyncio.Lock:
    lock = _locks.get(blob_id)
    if lock is None:
        lock = _locks[blob_id] = asyncio.Lock()
    return lock


def _paths(relay: Relay, blob_id: str) -> tuple[Path, Path]:
    """(upload in progress, complete blob)."""
    final = relay.data.blob_dir / blob_id
    return final.with_name(blob_id + ".part"), final


def _discard(relay: Relay, blob_id: str) -> None:
    for path in _paths(relay, blob_id):
        path.unlink(missing_ok=True)


def _is_member(relay: Relay, group_id: bytes, device_id: str) -> bool:
    return device_id in relay.members.get(group_id, ())


def _readable(relay: Relay, row: Row, device_id: str) -> bool:
    """A current member of the blob's group, or the one device it is addressed to."""
    if row.group_id is None:
        return row.recipient_device == device_id
    return _is_member(relay, row.group_id, device_id)


def _status(relay: Relay, blob_id: str, size: int, stored: int,
            complete: bool) -> rest.BlobStatus:
    return rest.BlobStatus(blob_id=blob_id, size=size, stored=stored, complete=complete,
                           chunk_size=relay.config.blob_chunk_bytes)


# -- upload -------------------------------------------------------------------------------------
async def create(relay: Relay, device: AuthDevice, body: rest.BlobCreate) -> rest.BlobStatus:
    """Declare a blob; its size counts against the uploader's quota from now on."""
    cfg = relay.config
    if len(body.sha256) != 32:
        raise ProblemError(422, Code.VALIDATION, "sha256 must be 32 bytes")
    if body.size > cfg.blob_max_bytes:
        raise ProblemError(413, Code.TOO_LARGE, f"blobs are limited to {cfg.blob_max_bytes} bytes")
    if (body.group_id is None) == (body.recipient_device is None):
        raise ProblemError(422, Code.VALIDATION, "give either group_id or recipient_device")
    blob_id = secrets.token_urlsafe(24)

    async def op(tx: Tx) -> None:
        if body.group_id is not None and not _is_member(relay, body.group_id, device.device_id):
            raise ProblemError(403, Code.NOT_A_MEMBER, "this device is not a member of the group")
        if body.recipient_device is not None and not await _own_device(
                tx, device, body.recipient_device):
            raise ProblemError(403, Code.FORBIDDEN,
                               "a blob may be addressed only to another device of one's user")
        used = (await tx.conn.execute(select(func.coalesce(func.sum(blobs.c.size), 0)).where(
            blobs.c.uploader_user == device.user_id))).scalar_one()
        if used + body.size > cfg.user_quota_bytes:
            raise ProblemError(413, Code.QUOTA_EXCEEDED,
                               f"{used} of {cfg.user_quota_bytes} bytes of quota already used")
        await tx.conn.execute(insert(blobs).values(
            id=blob_id, group_id=body.group_id, recipient_device=body.recipient_device,
            uploader_user=device.user_id,
            uploader_device=device.device_id, size=body.size, sha256=body.sha256, stored=0,
            complete=False, created_at=tx.now))
        tx.audit("blob_upload_started", user_id=device.user_id, device_id=device.device_id,
                 group_id=body.group_id, blob=blob_id, size=body.size)

    await relay.writer.run(op)
    return _status(relay, blob_id, body.size, 0, False)


async def _own_device(tx: Tx, device: AuthDevice, recipient: str) -> bool:
    row = (await tx.conn.execute(select(devices.c.user_id).where(
        devices.c.id == recipient, devices.c.revoked_at.is_(None)))).first()
    return row is not None and row.user_id == device.user_id and recipient != device.device_id


async def _row(relay: Relay, blob_id: str) -> Row | None:
    async with relay.engine.connect() as conn:
        return (await conn.execute(select(blobs).where(blobs.c.id == blob_id))).first()


async def visible(relay: Relay, device: AuthDevice, blob_id: str) -> Row:
    """The blob's row, for its uploader or its readers; 404 for anyone else."""
    row = await _row(relay, blob_id)
    if row is None or (row.uploader_device != device.device_id
                       and not _readable(relay, row, device.device_id)):
        raise ProblemError(404, Code.NOT_FOUND, "no such blob")
    return row


async def status(relay: Relay, device: AuthDevice, blob_id: str) -> rest.BlobStatus:
    row = await visible(relay, device, blob_id)
    return _status(relay, row.id, row.size, row.stored, row.complete)


async def append(relay: Relay, device: AuthDevice, blob_id: str, offset: int,
                 data: bytes) -> rest.BlobStatus:
    """Store one chunk at ``offset``, which must be exactly what is already stored.

    An empty chunk at the end finishes an upload whose last chunk was stored but not
    verified (the relay stopped in between).
    """
    cap = relay.config.blob_chunk_bytes
    if len(data) > cap:
        raise ProblemError(413, Code.TOO_LARGE, f"chunks are limited to {cap} bytes")
    async with _lock(blob_id):
        row = await visible(relay, device, blob_id)
        if row.uploader_device != device.device_id:
            raise ProblemError(403, Code.FORBIDDEN, "only the uploading device may write")
        if offset != row.stored:
            raise ProblemError(409, Code.BLOB_OFFSET,
                               f"{row.stored} bytes are stored: continue from offset {row.stored}")
        if offset + len(data) > row.size:
            raise ProblemError(413, Code.TOO_LARGE, "chunk goes beyond the declared size")
        if not data and offset < row.size:
            raise ProblemError(422, Code.VALIDATION, "empty chunk")
        if row.complete:
            return _status(relay, row.id, row.size, row.stored, True)
        part, final = _paths(relay, blob_id)
        stored = offset + len(data)
        if data:
            await asyncio.to_thread(_write, part, offset, data)

            async def record(tx: Tx) -> None:
                result = await tx.conn.execute(update(blobs).where(
                    blobs.c.id == blob_id, blobs.c.stored == offset).values(stored=stored))
                if result.rowcount != 1:  # collected meanwhile, or written by another process
                    raise ProblemError(409, Code.BLOB_OFFSET, "the upload changed; ask status")

            await relay.writer.run(record)
        if stored < row.size:
            return _status(relay, blob_id, row.size, stored, False)
        try:
            sealed = await asyncio.to_thread(_seal, part, final, row.sha256)
        except FileNotFoundError:  # collected meanwhile
            raise ProblemError(404, Code.NOT_FOUND, "no such blob") from None
        if not sealed:
            await _drop(relay, blob_id)
            raise ProblemError(422, Code.BLOB_HASH,
                               "content does not match the declared SHA-256; blob discarded")
        await _complete(relay, row)
        return _status(relay, blob_id, row.size, stored, True)


async def _complete(relay: Relay, row: Row) -> None:
    async def op(tx: Tx) -> None:
        await tx.conn.execute(update(blobs).where(blobs.c.id == row.id).values(
            complete=True, completed_at=tx.now))
        tx.audit("blob_upload_completed", user_id=row.uploader_user,
                 device_id=row.uploader_device, group_id=row.group_id, blob=row.id,
                 size=row.size)

    await relay.writer.run(op)


async def _drop(relay: Relay, blob_id: str) -> None:
    """Forget a corrupt upload: its row now, its file once that is committed."""

    async def op(tx: Tx) -> None:
        await tx.conn.execute(delete(blobs).where(blobs.c.id == blob_id))
        tx.on_commit(lambda: _discard(relay, blob_id))

    await relay.writer.run(op)


def _write(path: Path, offset: int, data: bytes) -> None:
    """Durably write ``data`` at ``offset`` and cut anything after it (a lost earlier try)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.seek(offset)
        f.write(data)
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def _seal(part: Path, final: Path, sha256: bytes) -> bool:
    """Check the whole upload's hash; if right, give it its final name (durably)."""
    src = part if part.exists() else final  # renamed already if the relay stopped before commit
    digest = hashlib.sha256()
    with src.open("rb") as f:
        while chunk := f.read(READ_SIZE):
            digest.update(chunk)
    if digest.digest() != sha256:
        return False
    os.replace(src, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


# -- download -----------------------------------------------------------------------------------
async def downloadable(relay: Relay, device: AuthDevice, blob_id: str) -> Row:
    """A complete blob's row, for its readers only (404 for anyone else)."""
    row = await _row(relay, blob_id)
    if row is None or not _readable(relay, row, device.device_id):
        raise ProblemError(404, Code.NOT_FOUND, "no such blob")
    if not row.complete:
        raise ProblemError(409, Code.BLOB_INCOMPLETE,
                           f"{row.stored} of {row.size} bytes uploaded so far")
    return row


async def open_blob(relay: Relay, blob_id: str) -> BinaryIO:
    """Opened before streaming starts, so a collection meanwhile cannot cut a download short."""
    try:
        return await asyncio.to_thread(_paths(relay, blob_id)[1].open, "rb")
    except FileNotFoundError:
        raise ProblemError(404, Code.NOT_FOUND, "no such blob") from None


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) asked by a Range header; None for the whole blob.

    One range only: ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n``; anything else is refused.
    """
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None or m.groups() == ("", ""):
        raise ProblemError(416, Code.RANGE_INVALID,
                           "one byte range only: bytes=a-b, bytes=a- or bytes=-n")
    first, last = m.groups()
    if first:
        start, end = int(first), min(int(last) + 1, size) if last else size
    else:
        start, end = max(size - int(last), 0), size
    if start >= end:
        raise ProblemError(416, Code.RANGE_INVALID,
                           f"range not satisfiable: the blob has {size} bytes")
    return start, end


def read_range(f: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """The file's bytes in [start, end), a piece at a time (iterated in a thread pool)."""
    with f:
        f.seek(start)
        left = end - start
        while left > 0 and (chunk := f.read(min(READ_SIZE, left))):
            left -= len(chunk)
            yield chunk


# -- garbage collection ---------------------------------------------------------------------------
async def collect(relay: Relay, tx: Tx) -> None:
    """Drop uploads abandoned past their TTL and blobs no member can fetch any more.

    A blob is unreferenced once its group has no member device left; a device-addressed one
    once its TTL has passed. Files go after commit.
    """
    stale = tx.now - relay.config.incomplete_blob_ttl_hours * 3600
    ids = list((await tx.conn.execute(select(blobs.c.id).where(
        blobs.c.complete.is_(False), blobs.c.created_at < stale).limit(GC_BATCH))).scalars())
    ids += (await tx.conn.execute(select(blobs.c.id).where(
        blobs.c.recipient_device.is_not(None),
        blobs.c.created_at < tx.now - DEVICE_BLOB_TTL_HOURS * 3600).limit(GC_BATCH))).scalars()
    group_ids = (await tx.conn.execute(select(blobs.c.group_id).distinct().where(
        blobs.c.group_id.is_not(None)))).scalars()
    orphaned = [g for g in group_ids if not relay.members.get(g)]
    if orphaned:
        ids += (await tx.conn.execute(select(blobs.c.id).where(
            blobs.c.complete.is_(True), blobs.c.group_id.in_(orphaned)).limit(GC_BATCH))).scalars()
    if not ids:
        return
    await tx.conn.execute(delete(blobs).where(blobs.c.id.in_(ids)))
    tx.audit("blobs_collected", blobs=ids)

    def unlink() -> None:
        for blob_id in ids:
            _discard(relay, blob_id)

    tx.on_commit(unlink)
