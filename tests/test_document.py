"""Document encryption: round trips, and every way a stored blob can be damaged is refused."""

from __future__ import annotations

import hashlib
import io
import struct
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import (
    crypto_secretstream_xchacha20poly1305_init_push,
    crypto_secretstream_xchacha20poly1305_push,
    crypto_secretstream_xchacha20poly1305_state,
)
from nacl.bindings import crypto_secretstream_xchacha20poly1305_TAG_FINAL as TAG_FINAL
from nacl.bindings import crypto_secretstream_xchacha20poly1305_TAG_MESSAGE as TAG_MESSAGE
from nacl.bindings import crypto_secretstream_xchacha20poly1305_TAG_PUSH as TAG_PUSH
from nacl.bindings import crypto_secretstream_xchacha20poly1305_TAG_REKEY as TAG_REKEY

from crypto.document import (
    ABYTES,
    DEFAULT_CHUNK_SIZE,
    HEADER_SIZE,
    MAGIC,
    MAX_CHUNK_SIZE,
    DocumentDecryptor,
    DocumentEncryptor,
    decrypt_iter,
    decrypt_stream,
    encrypt_stream,
)
from crypto.errors import CryptoError, DecodeError, DecryptError, MLSError, UnsupportedError

CS = 64  # small chunk size so tests cross many chunk boundaries


def fixed_random(n: int) -> bytes:
    return bytes(range(n))


def pattern(size: int) -> bytes:
    """Non-repeating-per-chunk plaintext, so swapped chunks would not decrypt to the same."""
    return hashlib.shake_256(size.to_bytes(8, "big")).digest(size) if size else b""


def encrypt(plaintext: bytes, chunk_size: int = CS) -> tuple[bytes, bytes]:
    """Return (blob, key)."""
    dst = io.BytesIO()
    doc = encrypt_stream(io.BytesIO(plaintext), dst, chunk_size=chunk_size)
    return dst.getvalue(), doc.key


def decrypt(blob: bytes, key: bytes, expected_hash: bytes | None = None) -> bytes:
    dst = io.BytesIO()
    n = decrypt_stream(io.BytesIO(blob), dst, key, expected_hash=expected_hash)
    assert n == len(dst.getvalue())
    return dst.getvalue()


def frames(blob: bytes, chunk_size: int = CS) -> list[bytes]:
    """Split a blob into header + ciphertext chunks."""
    body = blob[HEADER_SIZE:]
    step = chunk_size + ABYTES
    return [blob[:HEADER_SIZE]] + [body[i : i + step] for i in range(0, len(body), step)]


@pytest.mark.parametrize(
    "size", [0, 1, CS - 1, CS, CS + 1, 3 * CS, 3 * CS + 7, DEFAULT_CHUNK_SIZE, 100_000]
)
def test_round_trip(size: int) -> None:
    plaintext = pattern(size)
    dst = io.BytesIO()
    doc = encrypt_stream(io.BytesIO(plaintext), dst, chunk_size=CS)
    blob = dst.getvalue()
    assert len(doc.key) == 32
    assert doc.plaintext_size == size
    assert doc.ciphertext_sha256 == hashlib.sha256(blob).digest()
    # header, full chunks, then a final chunk with the remainder (possibly empty)
    assert len(blob) == HEADER_SIZE + size + (size // CS + 1) * ABYTES
    assert blob.startswith(MAGIC + b"\x01" + struct.pack(">I", CS))
    assert size < 16 or plaintext[:16] not in blob
    assert decrypt(blob, doc.key, doc.ciphertext_sha256) == plaintext


def test_round_trip_several_mib_default_chunk_and_small_chunks() -> None:
    plaintext = pattern(3 * 1024 * 1024 + 123)
    for chunk_size in (DEFAULT_CHUNK_SIZE, 4096):
        blob, key = encrypt(plaintext, chunk_size)
        assert len(frames(blob, chunk_size)) == 1 + len(plaintext) // chunk_size + 1
        assert decrypt(blob, key, hashlib.sha256(blob).digest()) == plaintext


def test_key_comes_from_injected_random_and_each_document_gets_its_own() -> None:
    doc = encrypt_stream(io.BytesIO(b"x"), io.BytesIO(), random=fixed_random)
    assert doc.key == bytes(range(32))
    assert encrypt(b"x")[1] != encrypt(b"x")[1]
    assert "key=" not in repr(doc)  # keys stay out of logs


def test_same_key_twice_still_gives_different_ciphertext() -> None:
    a, b = io.BytesIO(), io.BytesIO()
    encrypt_stream(io.BytesIO(b"same"), a, random=fixed_random)
    encrypt_stream(io.BytesIO(b"same"), b, random=fixed_random)
    assert a.getvalue() != b.getvalue()  # secretstream header nonce is fresh


def test_incremental_api_with_full_final_chunk_and_resend_of_header() -> None:
    enc = DocumentEncryptor(chunk_size=CS)
    plaintext = pattern(2 * CS)
    header = enc.header()
    assert enc.header() == header  # may be re-sent on resume
    c1 = enc.push(plaintext[:CS])
    c2 = enc.push(plaintext[CS:], final=True)  # a full-size chunk may be final
    assert len(c1) == len(c2) == CS + ABYTES
    doc = enc.result()
    blob = header + c1 + c2
    assert doc.ciphertext_sha256 == hashlib.sha256(blob).digest()
    assert doc.plaintext_size == 2 * CS
    assert decrypt(blob, doc.key, doc.ciphertext_sha256) == plaintext


def test_incremental_api_refuses_misuse() -> None:
    enc = DocumentEncryptor(chunk_size=CS)
    with pytest.raises(ValueError):
        enc.push(b"short")  # only the final chunk may be short
    with pytest.raises(ValueError):
        enc.push(bytes(CS + 1), final=True)
    with pytest.raises(ValueError):
        enc.result()
    enc.push(b"end", final=True)
    with pytest.raises(ValueError):
        enc.push(b"", final=True)
    for bad in (0, -1, MAX_CHUNK_SIZE + 1):
        with pytest.raises(ValueError):
            DocumentEncryptor(chunk_size=bad)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(min_value=0, max_value=200), max_size=30))
def test_decryptor_accepts_any_split_of_input(plaintext: bytes, cuts: list[int]) -> None:
    blob, key = encrypt(plaintext, chunk_size=37)
    pieces, pos = [], 0
    for cut in cuts:
        pieces.append(blob[pos : pos + cut])
        pos += cut
    pieces.append(blob[pos:])
    assert b"".join(decrypt_iter(pieces, key)) == plaintext


def test_encrypt_iter_rechunks_pieces_of_any_size() -> None:
    plaintext = pattern(1000)
    enc = DocumentEncryptor(chunk_size=CS)
    pieces = [plaintext[i : i + 7] for i in range(0, 1000, 7)]
    out = list(enc.encrypt_iter(pieces))
    assert all(len(c) == CS + ABYTES for c in out[1:-1])
    assert len(out[-1]) == 1000 % CS + ABYTES
    assert b"".join(decrypt_iter(out, enc.result().key)) == plaintext


# --- damage ---------------------------------------------------------------------------------


def test_truncation_dropping_last_chunk_is_detected() -> None:
    blob, key = encrypt(pattern(5 * CS + 10))
    fr = frames(blob)
    with pytest.raises(DecryptError):
        decrypt(b"".join(fr[:-1]), key)


def test_truncation_when_last_chunk_is_empty_final_is_detected() -> None:
    blob, key = encrypt(pattern(4 * CS))  # ends with an empty final chunk
    fr = frames(blob)
    assert len(fr[-1]) == ABYTES
    with pytest.raises(DecryptError):
        decrypt(b"".join(fr[:-1]), key)


@pytest.mark.parametrize("keep", [0, 1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 5])
def test_truncation_anywhere_is_detected(keep: int) -> None:
    blob, key = encrypt(pattern(3 * CS))
    with pytest.raises(DecryptError):
        decrypt(blob[:keep], key)
    with pytest.raises(DecryptError):
        decrypt(blob[:-1], key)


def test_reordered_chunks_are_detected() -> None:
    blob, key = encrypt(pattern(5 * CS + 3))
    fr = frames(blob)
    swapped = [*fr[:2], fr[3], fr[2], *fr[4:]]
    with pytest.raises(DecryptError):
        decrypt(b"".join(swapped), key)


def test_dropped_middle_chunk_is_detected() -> None:
    blob, key = encrypt(pattern(5 * CS + 3))
    fr = frames(blob)
    with pytest.raises(DecryptError):
        decrypt(b"".join(fr[:2] + fr[3:]), key)


@pytest.mark.parametrize("extra", [b"\x00", bytes(ABYTES), bytes(CS + ABYTES), bytes(3 * CS)])
def test_trailing_data_after_final_chunk_is_detected(extra: bytes) -> None:
    blob, key = encrypt(pattern(2 * CS + 5))
    with pytest.raises(DecryptError):
        decrypt(blob + extra, key)


def test_second_document_appended_is_detected() -> None:
    blob, key = encrypt(pattern(CS))
    with pytest.raises(DecryptError):
        decrypt(blob + blob, key)


def test_chunks_of_another_document_under_the_same_key_are_refused() -> None:
    a, b = io.BytesIO(), io.BytesIO()
    doc = encrypt_stream(io.BytesIO(pattern(3 * CS)), a, chunk_size=CS, random=fixed_random)
    encrypt_stream(io.BytesIO(pattern(3 * CS)), b, chunk_size=CS, random=fixed_random)
    fa, fb = frames(a.getvalue()), frames(b.getvalue())
    with pytest.raises(DecryptError):
        decrypt(b"".join(fa[:2] + fb[2:]), doc.key)


_FLIP_PLAINTEXT = pattern(300)
_FLIP_BLOB, _FLIP_KEY = encrypt(_FLIP_PLAINTEXT, chunk_size=CS)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_flipped_bit_is_detected(data: st.DataObject) -> None:
    pos = data.draw(st.integers(min_value=0, max_value=len(_FLIP_BLOB) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    damaged = bytearray(_FLIP_BLOB)
    damaged[pos] ^= 1 << bit
    with pytest.raises((DecryptError, DecodeError, UnsupportedError)):
        decrypt(bytes(damaged), _FLIP_KEY)


def test_header_is_authenticated_even_when_framing_is_unchanged() -> None:
    blob, key = encrypt(b"ten bytes!", chunk_size=CS)  # a single short final chunk
    # Claiming a larger chunk size leaves the framing intact: only the AD binding notices.
    forged = blob[:5] + struct.pack(">I", 2 * CS) + blob[9:]
    with pytest.raises(DecryptError):
        decrypt(forged, key)


def test_unreadable_headers() -> None:
    blob, key = encrypt(b"abc")
    with pytest.raises(DecodeError):
        decrypt(b"XXXX" + blob[4:], key)
    with pytest.raises(UnsupportedError):
        decrypt(blob[:4] + b"\x02" + blob[5:], key)
    for size in (0, MAX_CHUNK_SIZE + 1):
        with pytest.raises(DecodeError):
            decrypt(blob[:5] + struct.pack(">I", size) + blob[9:], key)


def test_wrong_key_is_detected() -> None:
    blob, key = encrypt(pattern(3 * CS))
    other = bytes(b ^ 1 for b in key)
    with pytest.raises(DecryptError):
        decrypt(blob, other)
    with pytest.raises(CryptoError):
        DocumentDecryptor(key[:31])


def test_hash_mismatch_is_detected() -> None:
    blob, key = encrypt(pattern(3 * CS))
    good = hashlib.sha256(blob).digest()
    assert decrypt(blob, key, good) == pattern(3 * CS)
    with pytest.raises(DecryptError):
        decrypt(blob, key, bytes(32))
    with pytest.raises(DecryptError):
        decrypt(blob, key, good[:-1])


def test_errors_are_mls_errors() -> None:
    blob, key = encrypt(b"abc")
    with pytest.raises(MLSError):
        decrypt(blob[:-1], key)


def test_decryptor_refuses_more_input_after_final() -> None:
    blob, key = encrypt(b"abc")
    dec = DocumentDecryptor(key)
    assert dec.feed(blob) == b""  # the short final chunk waits for finish()
    assert dec.finish() == b"abc"
    assert dec.ciphertext_sha256 == hashlib.sha256(blob).digest()
    with pytest.raises(DecryptError):
        dec.feed(b"x")


def forge(chunks: list[tuple[bytes, int]], key: bytes, chunk_size: int = CS) -> bytes:
    """Build a blob from the format spec directly, as a key-holding (malicious) sender could."""
    state = crypto_secretstream_xchacha20poly1305_state()
    stream_header = crypto_secretstream_xchacha20poly1305_init_push(state, key)
    header = MAGIC + b"\x01" + struct.pack(">I", chunk_size) + stream_header
    return header + b"".join(
        crypto_secretstream_xchacha20poly1305_push(state, m, header, tag) for m, tag in chunks
    )


def test_blob_built_from_the_spec_decrypts() -> None:
    key = bytes(32)
    blob = forge([(b"a" * CS, TAG_MESSAGE), (b"b" * 3, TAG_FINAL)], key)
    assert decrypt(blob, key) == b"a" * CS + b"bbb"


@pytest.mark.parametrize(
    "chunks",
    [
        [(b"short", TAG_MESSAGE)],  # last chunk not final
        [(b"a" * CS, TAG_MESSAGE), (b"x", TAG_PUSH), (b"", TAG_FINAL)],  # foreign tag
        [(b"a" * CS, TAG_REKEY), (b"", TAG_FINAL)],
        [(b"a" * CS, TAG_FINAL), (b"b" * CS, TAG_MESSAGE)],  # a chunk after the final one
    ],
)
def test_forged_streams_from_a_key_holder_are_refused(chunks: list[tuple[bytes, int]]) -> None:
    key = bytes(32)
    with pytest.raises(DecryptError):
        decrypt(forge(chunks, key), key)


def test_trailing_bytes_after_a_full_size_final_chunk_are_detected() -> None:
    enc = DocumentEncryptor(chunk_size=CS)
    blob = enc.header() + enc.push(pattern(CS), final=True)
    key = enc.result().key
    assert decrypt(blob, key) == pattern(CS)
    for extra in (b"x", bytes(CS + ABYTES)):
        with pytest.raises(DecryptError):
            decrypt(blob + extra, key)
        dec = DocumentDecryptor(key)
        dec.feed(blob)
        with pytest.raises(DecryptError):
            dec.feed(extra)


# --- streaming ------------------------------------------------------------------------------


def generated_source(total: int, piece: int) -> Iterator[bytes]:
    """``total`` bytes in pieces, made on demand so the source itself holds one piece."""
    for i, start in enumerate(range(0, total, piece)):
        yield bytes((i % 251,)) * min(piece, total - start)


def test_encryption_and_decryption_stream_in_bounded_memory() -> None:
    total, cs = 20 * 1024 * 1024, DEFAULT_CHUNK_SIZE
    expected = hashlib.sha256()
    for piece in generated_source(total, 10_000):
        expected.update(piece)
    enc = DocumentEncryptor(chunk_size=cs)

    tracemalloc.start()
    try:
        sizes = []
        ciphertext_hash = hashlib.sha256()
        for out in enc.encrypt_iter(generated_source(total, 10_000)):
            sizes.append(len(out))
            ciphertext_hash.update(out)
        _, enc_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()

        doc = enc.result()
        assert doc.plaintext_size == total
        assert doc.ciphertext_sha256 == ciphertext_hash.digest()
        assert sizes[0] == HEADER_SIZE
        assert max(sizes[1:]) == cs + ABYTES
        assert len(sizes) == 1 + total // cs + 1

        # decrypt while encrypting (the key is known up front thanks to the injected random)
        enc2 = DocumentEncryptor(chunk_size=cs, random=fixed_random)
        got = hashlib.sha256()
        out_sizes = []
        ciphertext = enc2.encrypt_iter(generated_source(total, 10_000))
        for out in decrypt_iter(ciphertext, bytes(range(32))):
            out_sizes.append(len(out))
            got.update(out)
        _, dec_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.digest() == expected.digest()
    assert max(out_sizes) <= cs
    assert enc_peak < 8 * cs, enc_peak
    assert dec_peak < 8 * cs, dec_peak
