"""Document encryption for shared files: libsodium secretstream under a fresh random key.

Documents (imaging reports, prescriptions, lab results) can be large, so they are
encrypted and decrypted as streams of fixed-size chunks, never held whole in memory.
The message that shares a document carries the blob id, the key and the SHA-256 of the
ciphertext; the relay only ever stores the opaque blob.

Format (integers big-endian)::

    header  = "LSD1" || version u8 (=1) || chunk_size u32 || secretstream header (24 bytes)
    chunk_i = secretstream_push(plaintext_i, ad=header, tag)   # len(plaintext_i) + 17

Every chunk but the last carries exactly ``chunk_size`` plaintext bytes under TAG_MESSAGE;
the last carries 0..chunk_size bytes under TAG_FINAL. The whole header is the additional
data of every chunk, so altering the magic, version or chunk size fails authentication.
Reordered, dropped, truncated or appended chunks are detected by secretstream's implicit
counter, the final tag and the framing. The stream header's nonce comes from libsodium's
own CSPRNG (secretstream cannot take it from the caller); the key comes from ``random``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import BinaryIO

from nacl.bindings import (
    crypto_secretstream_xchacha20poly1305_ABYTES,
    crypto_secretstream_xchacha20poly1305_HEADERBYTES,
    crypto_secretstream_xchacha20poly1305_init_pull,
    crypto_secretstream_xchacha20poly1305_init_push,
    crypto_secretstream_xchacha20poly1305_KEYBYTES,
    crypto_secretstream_xchacha20poly1305_pull,
    crypto_secretstream_xchacha20poly1305_push,
    crypto_secretstream_xchacha20poly1305_state,
    crypto_secretstream_xchacha20poly1305_TAG_FINAL,
    crypto_secretstream_xchacha20poly1305_TAG_MESSAGE,
)
from nacl.exceptions import RuntimeError as NaclRuntimeError

from crypto.errors import CryptoError, DecodeError, DecryptError, UnsupportedError

MAGIC = b"LSD1"
VERSION = 1
KEY_SIZE = crypto_secretstream_xchacha20poly1305_KEYBYTES
ABYTES = crypto_secretstream_xchacha20poly1305_ABYTES
DEFAULT_CHUNK_SIZE = 64 * 1024
# Bounds what a decryptor buffers, whatever chunk size a (hostile) header claims.
MAX_CHUNK_SIZE = 4 * 1024 * 1024

_PREFIX = struct.Struct(">4sBI")
HEADER_SIZE = _PREFIX.size + crypto_secretstream_xchacha20poly1305_HEADERBYTES
# Read size of decrypt_stream: plaintext handed out per read stays around one chunk.
_READ_SIZE = DEFAULT_CHUNK_SIZE + ABYTES


@dataclass(frozen=True)
class DocumentKey:
    """What the sharing message must carry (with the blob id) to let members open a document."""

    key: bytes = field(repr=False)
    ciphertext_sha256: bytes
    plaintext_size: int


def _check_chunk_size(chunk_size: int) -> None:
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size must be in 1..{MAX_CHUNK_SIZE}")


class DocumentEncryptor:
    """Encrypts one document chunk by chunk, so an upload can start (and resume) per chunk.

    ``header()`` is the first piece of the blob and may be re-sent; each ``push`` returns the
    next ciphertext chunk, which the uploader keeps until the relay acknowledges it. The
    secretstream state cannot be saved, so an upload interrupted across restarts begins again
    with a new encryptor (and a new key: nothing has been shared yet).
    """

    def __init__(
        self,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        _check_chunk_size(chunk_size)
        self._chunk_size = chunk_size
        self._key = random(KEY_SIZE)
        self._state = crypto_secretstream_xchacha20poly1305_state()
        stream_header = crypto_secretstream_xchacha20poly1305_init_push(self._state, self._key)
        self._header = _PREFIX.pack(MAGIC, VERSION, chunk_size) + stream_header
        self._hash = hashlib.sha256(self._header)
        self._plaintext_size = 0
        self._finished = False

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    def header(self) -> bytes:
        """The blob's first bytes (already counted in the ciphertext hash)."""
        return self._header

    def push(self, chunk: bytes, *, final: bool = False) -> bytes:
        """Encrypt the next chunk: exactly ``chunk_size`` bytes, or up to that when final."""
        if self._finished:
            raise ValueError("document already finalised")
        if len(chunk) > self._chunk_size or (not final and len(chunk) != self._chunk_size):
            raise ValueError("only the final chunk may be shorter than the chunk size")
        tag = (
            crypto_secretstream_xchacha20poly1305_TAG_FINAL
            if final
            else crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
        )
        out = crypto_secretstream_xchacha20poly1305_push(self._state, chunk, self._header, tag)
        self._hash.update(out)
        self._plaintext_size += len(chunk)
        self._finished = final
        return out

    def encrypt_iter(self, plaintext: Iterable[bytes]) -> Iterator[bytes]:
        """Yield the header then ciphertext chunks for plaintext pieces of any size.

        Full chunks are sent as soon as they are complete, so at most one chunk (plus the
        piece being consumed) is buffered; the final chunk holds the remainder, possibly empty.
        """
        yield self._header
        buf = bytearray()
        for piece in plaintext:
            buf += piece
            while len(buf) >= self._chunk_size:
                yield self.push(bytes(buf[: self._chunk_size]))
                del buf[: self._chunk_size]
        yield self.push(bytes(buf), final=True)

    def result(self) -> DocumentKey:
        """The key, ciphertext hash and size, once the final chunk has been pushed."""
        if not self._finished:
            raise ValueError("document not finalised")
        return DocumentKey(self._key, self._hash.digest(), self._plaintext_size)


class DocumentDecryptor:
    """Decrypts a document fed in pieces of any size; only ``finish()`` proves it complete.

    Plaintext is released chunk by chunk before the end is known, so a caller must treat
    everything it received as untrusted, and discard it, unless ``finish()`` returns.
    """

    def __init__(self, key: bytes, *, expected_hash: bytes | None = None) -> None:
        if len(key) != KEY_SIZE:
            raise CryptoError(f"document key must be {KEY_SIZE} bytes")
        self._key = key
        self._expected_hash = expected_hash
        self._state = crypto_secretstream_xchacha20poly1305_state()
        self._header: bytes | None = None
        self._frame_size = 0
        self._buf = bytearray()
        self._hash = hashlib.sha256()
        self._final_seen = False

    @property
    def ciphertext_sha256(self) -> bytes:
        """SHA-256 of the ciphertext fed so far (the whole blob once ``finish()`` returned)."""
        return self._hash.digest()

    def feed(self, data: bytes) -> bytes:
        """Take the next ciphertext bytes; return the plaintext of the chunks they complete."""
        self._hash.update(data)
        self._buf += data
        if self._header is None:
            if len(self._buf) < HEADER_SIZE:
                return b""
            self._start(bytes(self._buf[:HEADER_SIZE]))
            del self._buf[:HEADER_SIZE]
        out = []
        while len(self._buf) >= self._frame_size:
            if self._final_seen:
                raise DecryptError("data after the final chunk")
            out.append(self._pull(bytes(self._buf[: self._frame_size])))
            del self._buf[: self._frame_size]
        if self._final_seen and self._buf:
            raise DecryptError("data after the final chunk")
        return b"".join(out)

    def finish(self) -> bytes:
        """Signal end of input: return the last plaintext, or raise if the document is bad."""
        last = b""
        if not self._final_seen:
            if self._header is None or len(self._buf) < ABYTES:
                raise DecryptError("document truncated")
            last = self._pull(bytes(self._buf))
            self._buf.clear()
            if not self._final_seen:
                raise DecryptError("document truncated: no final chunk")
        if self._expected_hash is not None and not hmac.compare_digest(
            self._hash.digest(), self._expected_hash
        ):
            raise DecryptError("document hash mismatch")
        return last

    def _start(self, header: bytes) -> None:
        magic, version, chunk_size = _PREFIX.unpack_from(header)
        if magic != MAGIC:
            raise DecodeError("not a Liaison document")
        if version != VERSION:
            raise UnsupportedError(f"document format version {version}")
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise DecodeError("document chunk size out of range")
        crypto_secretstream_xchacha20poly1305_init_pull(
            self._state, header[_PREFIX.size :], self._key
        )
        self._header = header
        self._frame_size = chunk_size + ABYTES

    def _pull(self, frame: bytes) -> bytes:
        try:
            plaintext, tag = crypto_secretstream_xchacha20poly1305_pull(
                self._state, frame, self._header
            )
        except NaclRuntimeError as exc:
            raise DecryptError("document chunk failed authentication") from exc
        if tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL:
            self._final_seen = True
        elif tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE:
            raise DecryptError("unexpected secretstream tag")
        return plaintext


def decrypt_iter(
    ciphertext: Iterable[bytes], key: bytes, *, expected_hash: bytes | None = None
) -> Iterator[bytes]:
    """Yield plaintext for ciphertext pieces of any size; raises at the end if incomplete.

    The caller must discard everything yielded if this raises, even on the last step.
    """
    decryptor = DocumentDecryptor(key, expected_hash=expected_hash)
    for piece in ciphertext:
        if out := decryptor.feed(piece):
            yield out
    if last := decryptor.finish():
        yield last


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    random: Callable[[int], bytes] = os.urandom,
) -> DocumentKey:
    """Encrypt ``src`` to ``dst`` under a fresh key, one chunk in memory at a time."""
    encryptor = DocumentEncryptor(chunk_size=chunk_size, random=random)
    for out in encryptor.encrypt_iter(iter(partial(src.read, chunk_size), b"")):
        dst.write(out)
    return encryptor.result()


def decrypt_stream(
    src: BinaryIO, dst: BinaryIO, key: bytes, *, expected_hash: bytes | None = None
) -> int:
    """Decrypt ``src`` to ``dst``; return the plaintext size.

    Raises DecryptError on a wrong key, tampering, truncation, trailing data or (checked
    last) a ciphertext hash other than ``expected_hash``; DecodeError/UnsupportedError on an
    unreadable header. Plaintext is written as it is authenticated, chunk by chunk, so on
    any error the caller MUST discard what was written to ``dst``.
    """
    written = 0
    pieces = iter(partial(src.read, _READ_SIZE), b"")
    for out in decrypt_iter(pieces, key, expected_hash=expected_hash):
        dst.write(out)
        written += len(out)
    return written
