"""Documents over the relay: what may be shared, and transfers that survive a dropped connection.

A file's type is sniffed from its first bytes, never taken from its name: a "report.pdf"
found on a ward computer may be anything. Only PDF, common images, plain UTF-8 text and DICOM
may be shared, up to a size limit, and both are checked before any byte leaves the device.
The file is then encrypted into the profile's staging area (the only copy the profile ever
holds is ciphertext) and uploaded chunk by chunk. A dropped connection is resumed at the offset
the relay says it stored, with backoff, until nothing got through for a bounded time. Downloads
resume the same way with a byte range and go straight into the encrypted cache, which keeps
them only if the hash the sharing message carries matches.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import queue
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO, TypeVar

from app.client.connection import backoff_delay
from app.client.content import DocumentContent, MediaType
from app.client.relay_api import RelayClient, RelayError, RelayUnavailable
from crypto.document import DocumentKey
from crypto.errors import DecryptError, MLSError
from protocol import rest
from protocol.problems import Code
from storage.attachments import Attachment
from storage.documents import DocumentCache

MAX_DOCUMENT_BYTES = 50 * 1024 * 1024  # under the relay's default blob limit, ciphertext included
SNIFF_BYTES = 8192
_TEXT_READ = 1024 * 1024
# C0 controls other than tab, line feed, vertical tab, form feed and carriage return, and DEL:
# present in binary files, absent from text.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
# (offset, magic) parts that must all match, and the type they show.
_SIGNATURES: tuple[tuple[tuple[tuple[int, bytes], ...], MediaType], ...] = (
    (((0, b"%PDF-"),), "application/pdf"),
    (((0, b"\x89PNG\r\n\x1a\n"),), "image/png"),
    (((0, b"\xff\xd8\xff"),), "image/jpeg"),
    (((0, b"GIF87a"),), "image/gif"),
    (((0, b"GIF89a"),), "image/gif"),
    (((0, b"RIFF"), (8, b"WEBP")), "image/webp"),
    (((0, b"II*\x00"),), "image/tiff"),
    (((0, b"MM\x00*"),), "image/tiff"),
    (((128, b"DICM"),), "application/dicom"),
)
ALLOWED = "PDF, PNG, JPEG, GIF, WebP, TIFF, DICOM and plain UTF-8 text"

Progress = Callable[[int, int], None]  # (done, total) bytes of ciphertext
T = TypeVar("T")


class DocumentError(Exception):
    """A document that may not be shared, or a transfer that failed; the message says why."""


# -- what may be shared ------------------------------------------------------------------------
def sniff(head: bytes, *, whole: bool) -> MediaType | None:
    """The allowed type a file's first bytes show, or None. ``whole`` says ``head`` is the
    entire file (otherwise a multi-byte character may be cut at its end)."""
    for parts, media_type in _SIGNATURES:
        if all(head[at : at + len(magic)] == magic for at, magic in parts):
            return media_type
    decoder = codecs.getincrementaldecoder("utf-8")()
    return "text/plain" if _text(decoder, head, final=whole) else None


def _text(decoder: codecs.IncrementalDecoder, data: bytes, *, final: bool) -> bool:
    try:
        return _CONTROL.search(decoder.decode(data, final)) is None
    except UnicodeDecodeError:
        return False


def _all_text(f: BinaryIO) -> bool:
    """Whether the whole file is text: a text head may hide a binary payload further on."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    f.seek(0)
    for piece in iter(partial(f.read, _TEXT_READ), b""):
        if not _text(decoder, piece, final=False):
            return False
    return _text(decoder, b"", final=True)


def check(f: BinaryIO, name: str, max_bytes: int) -> MediaType:
    """The type of the open file if it may be shared; DocumentError saying why not otherwise.
    Leaves ``f`` at its start."""
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        raise DocumentError(f"{name} is empty")
    if size > max_bytes:
        raise DocumentError(
            f"{name} is {size} bytes: documents are limited to {max_bytes} bytes"
        )
    head = f.read(SNIFF_BYTES)
    media_type = sniff(head, whole=len(head) == size)
    if media_type == "text/plain" and len(head) < size and not _all_text(f):
        media_type = None
    if media_type is None:
        raise DocumentError(
            f"{name} may not be shared: only {ALLOWED} may, and its content (whatever its "
            "name says) is none of them"
        )
    f.seek(0)
    return media_type


def attachment(content: DocumentContent) -> Attachment:
    """The attachment row of a message sharing ``content``."""
    return Attachment(
        blob_id=content.blob,
        file_name=content.name,
        media_type=content.media_type,
        key=DocumentKey(content.key, content.sha256, content.size),
    )


# -- riding out dropped connections ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Retry:
    """How a transfer rides out lost connections: backoff between attempts, and giving up
    once nothing got through for ``give_up_after`` seconds (a slow transfer goes on)."""

    give_up_after: float = 120.0
    base: float = 0.2
    cap: float = 10.0


class _Attempts:
    def __init__(self, retry: Retry, what: str) -> None:
        self._retry, self._what = retry, what
        self._since = time.monotonic()
        self._attempt = 0

    def progressed(self) -> None:
        self._since, self._attempt = time.monotonic(), 0

    async def wait(self, error: Exception) -> None:
        """Back off before the next attempt, or give up if the time without progress is over."""
        left = self._retry.give_up_after - (time.monotonic() - self._since)
        if left <= 0:
            raise DocumentError(
                f"{self._what} abandoned: nothing got through for "
                f"{self._retry.give_up_after:.0f} s ({error})"
            ) from error
        delay = backoff_delay(self._attempt, random.random, base=self._retry.base,
                              cap=self._retry.cap)
        await asyncio.sleep(min(delay, left))
        self._attempt += 1

    async def call(self, request: Callable[[], Awaitable[T]]) -> T:
        """A request sent again until the relay answers it."""
        while True:
            try:
                return await request()
            except RelayUnavailable as e:
                await self.wait(e)


# -- upload ---------------------------------------------------------------------------------------
async def upload_file(
    relay: RelayClient,
    cache: DocumentCache,
    group_id: bytes,
    path: Path,
    *,
    caption: str | None,
    max_bytes: int,
    on_progress: Progress,
    retry: Retry,
) -> DocumentContent:
    """Check the file, encrypt it into staging, upload it, and cache it under its blob id;
    return the content of the message that shares it. A refused file reaches no one."""
    try:
        f = path.open("rb")
    except OSError as e:
        raise DocumentError(f"cannot read {path}: {e.strerror}") from e
    with f:
        media_type = check(f, path.name, max_bytes)
        staged = await asyncio.to_thread(cache.encrypt, f)
    try:
        with cache.open_staged(staged) as ciphertext:
            blob_id = await upload(relay, group_id, ciphertext, staged.key.ciphertext_sha256,
                                   on_progress=on_progress, retry=retry)
        cache.promote(staged, blob_id)
    except BaseException:
        cache.discard(staged)
        raise
    return DocumentContent(
        blob=blob_id, key=staged.key.key, sha256=staged.key.ciphertext_sha256,
        size=staged.key.plaintext_size, name=path.name, media_type=media_type, caption=caption,
    )


async def upload(
    relay: RelayClient,
    group_id: bytes,
    ciphertext: BinaryIO,
    sha256: bytes,
    *,
    on_progress: Progress,
    retry: Retry,
) -> str:
    """Upload the ciphertext as a new blob of the group; its id once the relay holds it whole
    and verified."""
    size = os.fstat(ciphertext.fileno()).st_size
    attempts = _Attempts(retry, "the upload")
    try:
        status = await attempts.call(lambda: relay.create_blob(group_id, size, sha256))
        while not status.complete:
            stored = status.stored
            status = await _put_next(relay, attempts, status, ciphertext)
            if status.stored > stored:
                attempts.progressed()
                on_progress(status.stored, size)
    except RelayError as e:
        raise DocumentError(f"the relay refused the document: {e}") from e
    return status.blob_id


async def _put_next(relay: RelayClient, attempts: _Attempts, status: rest.BlobStatus,
                    ciphertext: BinaryIO) -> rest.BlobStatus:
    """Send the chunk at the stored offset (an empty one at the end finishes an upload stored
    whole but not verified yet); after a lost connection or a refused offset, the relay's
    status says where to go on."""
    ciphertext.seek(status.stored)
    chunk = ciphertext.read(status.chunk_size)
    try:
        return await relay.put_blob_chunk(status.blob_id, status.stored, chunk)
    except RelayUnavailable as e:
        await attempts.wait(e)
    except RelayError as e:
        if e.code is not Code.BLOB_OFFSET:
            raise
    return await attempts.call(lambda: relay.blob_status(status.blob_id))


# -- download -------------------------------------------------------------------------------------
async def download(
    relay: RelayClient,
    cache: DocumentCache,
    blob_id: str,
    sha256: bytes,
    *,
    on_progress: Progress,
    retry: Retry,
) -> None:
    """Fetch the blob into the encrypted cache as it arrives; DocumentError, with nothing
    kept, if the transfer fails for good or the blob is not the one the message shared."""
    pieces: queue.SimpleQueue[bytes | Exception | None] = queue.SimpleQueue()
    storing = asyncio.ensure_future(
        asyncio.to_thread(cache.store, blob_id, _drain(pieces), sha256)
    )
    try:
        async for piece in _ciphertext(relay, blob_id, on_progress, retry):
            pieces.put(piece)
    except BaseException:
        pieces.put(DocumentError("download abandoned"))  # the cache drops the partial file
        await asyncio.gather(storing, return_exceptions=True)
        raise
    pieces.put(None)
    try:
        await storing
    except DecryptError:
        raise DocumentError(
            "the downloaded document does not match the hash its message carries: discarded"
        ) from None


def _drain(pieces: queue.SimpleQueue[bytes | Exception | None]) -> Iterator[bytes]:
    """The downloaded pieces, for the cache's writing thread: None ends, an error aborts."""
    while (piece := pieces.get()) is not None:
        if isinstance(piece, Exception):
            raise piece
        yield piece


async def _ciphertext(relay: RelayClient, blob_id: str, on_progress: Progress,
                      retry: Retry) -> AsyncIterator[bytes]:
    """The blob's bytes in order, resumed with a byte range after each lost connection."""
    attempts = _Attempts(retry, "the download")
    try:
        status = await attempts.call(lambda: relay.blob_status(blob_id))
        if not status.complete:
            raise DocumentError("the document is not uploaded whole yet: try again later")
        received = 0
        while received < status.size:
            try:
                async for piece in relay.download_blob(blob_id, received):
                    received += len(piece)
                    if received > status.size:
                        raise DocumentError("the relay sent more than the document's size")
                    attempts.progressed()
                    on_progress(received, status.size)
                    yield piece
                if received < status.size:
                    raise RelayUnavailable("the download ended early")
            except RelayUnavailable as e:
                await attempts.wait(e)
    except RelayError as e:
        raise DocumentError(f"the relay refused the download: {e}") from e


# -- export ---------------------------------------------------------------------------------------
def export(cache: DocumentCache, item: Attachment, destination: Path) -> int:
    """Write the cached document's plaintext to ``destination``; its size. A damaged copy is
    dropped from the cache (the next fetch downloads it again) and nothing is written."""
    try:
        return _decrypted(cache, item, lambda: cache.export(item.blob_id, item.key, destination))
    except OSError as e:
        raise DocumentError(f"cannot write {destination}: {e.strerror}") from e


def read(cache: DocumentCache, item: Attachment) -> bytes:
    """The cached document's plaintext, in memory only (to archive it to the record)."""
    return _decrypted(cache, item, lambda: b"".join(cache.read(item.blob_id, item.key)))


def _decrypted(cache: DocumentCache, item: Attachment, work: Callable[[], T]) -> T:
    """``work`` on a cached document; a damaged copy is dropped (fetched again next time)."""
    if item.blob_id not in cache:
        raise DocumentError(f"{item.file_name} is not downloaded yet: fetch it first")
    try:
        return work()
    except MLSError as e:
        cache.remove(item.blob_id)
        raise DocumentError(f"the cached copy of {item.file_name} is damaged ({e}): "
                            "removed, fetch it again") from e
