"""The document cache: shared files kept on disk only as crypto/'s secretstream ciphertext.

Files are named by blob id, nothing else (the file name and the key live in the encrypted
database, see attachments.py). A received document is cached as the ciphertext the relay
served, checked against the hash its message carried; a document this device sends is
encrypted on its way in. Reading decrypts as it streams; ``export`` is the only way plaintext
reaches the disk, at a destination the user chose.

The app passes platformdirs' user data directory (tests pass a temporary one).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

from crypto.document import DEFAULT_CHUNK_SIZE, DocumentKey, decrypt_iter, encrypt_stream
from crypto.errors import DecryptError

_BLOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_STAGING = ".staging"  # not a blob id: a leading dot never matches _BLOB_ID
_READ_SIZE = DEFAULT_CHUNK_SIZE


@dataclass(frozen=True, slots=True)
class StagedDocument:
    """A document this device encrypted and has not uploaded yet (no blob id so far)."""

    token: str
    key: DocumentKey


@contextmanager
def _atomic_file(directory: Path, final: Path) -> Iterator[BinaryIO]:
    """A temporary file in ``directory`` renamed to ``final`` only if the block succeeds."""
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class DocumentCache:
    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._staging = directory / _STAGING
        self._staging.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, blob_id: str) -> Path:
        if not _BLOB_ID.fullmatch(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self._dir / blob_id

    def store(self, blob_id: str, ciphertext: Iterable[bytes], sha256: bytes) -> None:
        """Cache a downloaded blob; DecryptError (nothing kept) if it is not the one shared."""
        digest = hashlib.sha256()
        with _atomic_file(self._dir, self._path(blob_id)) as f:
            for piece in ciphertext:
                digest.update(piece)
                f.write(piece)
            if not hmac.compare_digest(digest.digest(), sha256):
                raise DecryptError("document hash mismatch")

    def encrypt(self, plaintext: BinaryIO) -> StagedDocument:
        """Encrypt a document to send under a fresh key, into the staging area."""
        token = secrets.token_hex(16)
        with _atomic_file(self._staging, self._staging / token) as f:
            key = encrypt_stream(plaintext, f)
        return StagedDocument(token, key)

    def open_staged(self, staged: StagedDocument) -> BinaryIO:
        """The staged ciphertext, to upload."""
        return (self._staging / staged.token).open("rb")

    def promote(self, staged: StagedDocument, blob_id: str) -> None:
        """The relay stored the upload as ``blob_id``: cache it under that name."""
        os.replace(self._staging / staged.token, self._path(blob_id))

    def discard(self, staged: StagedDocument) -> None:
        """Drop one upload that failed, leaving other uploads in progress alone."""
        (self._staging / staged.token).unlink(missing_ok=True)

    def discard_staged(self) -> int:
        """Delete unfinished uploads (at startup: an upload never survives a restart, its
        encryptor is gone); return how many."""
        staged = list(self._staging.iterdir())
        for path in staged:
            path.unlink()
        return len(staged)

    def __contains__(self, blob_id: str) -> bool:
        return self._path(blob_id).is_file()

    def blob_ids(self) -> set[str]:
        return {p.name for p in self._dir.iterdir() if _BLOB_ID.fullmatch(p.name)}

    def remove(self, blob_id: str) -> None:
        self._path(blob_id).unlink(missing_ok=True)

    def read(self, blob_id: str, key: DocumentKey) -> Iterator[bytes]:
        """The document's plaintext, chunk by chunk, as it is decrypted.

        Raises FileNotFoundError at once if the blob is not cached. A chunk is released once
        authenticated, but only the end proves the document whole: if the iteration raises
        (DecryptError), the caller must discard everything it received.
        """
        f = self._path(blob_id).open("rb")
        return self._decrypt(f, key)

    @staticmethod
    def _decrypt(f: BinaryIO, key: DocumentKey) -> Iterator[bytes]:
        with f:
            pieces = iter(partial(f.read, _READ_SIZE), b"")
            yield from decrypt_iter(pieces, key.key, expected_hash=key.ciphertext_sha256)

    def export(self, blob_id: str, key: DocumentKey, destination: Path) -> int:
        """Write the plaintext to ``destination`` (the user's explicit choice); return its
        size. The file appears whole or not at all: a damaged document leaves nothing."""
        size = 0
        with _atomic_file(destination.parent, destination) as f:
            for chunk in self.read(blob_id, key):
                f.write(chunk)
                size += len(chunk)
        return size
