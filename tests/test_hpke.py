"""HPKE against the RFC 9180 Appendix A test vectors, plus direct checks of crypto.primitives.

The vectors are parsed at run time from the shared copy of RFC 9180 (not copied into the
project); the parser asserts it found them so a moved or reformatted spec fails loudly.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import CryptoError, DecryptError
from crypto.hpke import Hpke, _derive_key_pair
from crypto.primitives import (
    AES128GCM,
    CHACHA20POLY1305,
    Aead,
    ed25519_public,
    ed25519_sign,
    ed25519_verify,
    hkdf_expand,
    hkdf_extract,
    hmac_sha256,
    sha256,
    x25519,
    x25519_public,
)

SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "specs" / "rfc9180-hpke.md"

SUITES: dict[str, tuple[str, Aead]] = {
    "aes128gcm": ("DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM", AES128GCM),
    "chacha20poly1305": (
        "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305",
        CHACHA20POLY1305,
    ),
}

_KEY_LINE = re.compile(r"^([A-Za-z_][A-Za-z_ ]*):\s*(.*)$")
_HEX_LINE = re.compile(r"^[0-9a-f]+$")

# Points of small order on Curve25519 (RFC 7748 §5 discussion; libsodium's blocklist).
LOW_ORDER_POINTS = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def _section(lines: list[str], heading: str) -> list[str]:
    """Lines under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = lines.index(heading) + 1
    for end in range(start, len(lines)):
        head = lines[end].split(" ", 1)[0]
        if head and set(head) == {"#"} and len(head) <= len(level):
            return lines[start:end]
    return lines[start:]


def _first_block(lines: list[str]) -> list[str]:
    """Contents of the first ``~~~`` fenced block."""
    start = next(i for i, line in enumerate(lines) if line.startswith("~~~")) + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("~~~"))
    return lines[start:end]


def _records(block: list[str]) -> list[dict[str, str]]:
    """Blank-line separated ``key: value`` records; bare hex lines continue the last value."""
    records: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for raw in [*block, ""]:
        line = raw.strip()
        if not line:
            if current:
                records.append(current)
            current, last = {}, ""
        elif (m := _KEY_LINE.match(line)) is not None:
            last = m.group(1)
            current[last] = m.group(2)
        else:
            assert last and _HEX_LINE.match(line), f"unparsable vector line: {line!r}"
            current[last] += line
    return records


@cache
def vectors(suite: str) -> dict[str, Any]:
    """Base-mode vectors of one suite: setup fields, encryptions and exports."""
    title, aead = SUITES[suite]
    lines = SPEC.read_text(encoding="utf-8").splitlines()
    base = _section(_section(lines, f"## {title}"), "### Base Setup Information")
    (setup,) = _records(_first_block(base))
    assert (setup["mode"], setup["kem_id"], setup["kdf_id"]) == ("0", "32", "1")
    assert int(setup["aead_id"]) == aead.id
    encryptions = [
        {k: int(v) if k == "sequence number" else bytes.fromhex(v) for k, v in rec.items()}
        for rec in _records(_first_block(_section(base, "#### Encryptions")))
    ]
    exports = [
        (
            bytes.fromhex(rec["exporter_context"]),
            int(rec["L"]),
            bytes.fromhex(rec["exported_value"]),
        )
        for rec in _records(_first_block(_section(base, "#### Exported Values")))
    ]
    fields = {k: bytes.fromhex(v) for k, v in setup.items() if not k.endswith(("mode", "_id"))}
    return {**fields, "encryptions": encryptions, "exports": exports, "aead": aead}


@pytest.fixture(params=sorted(SUITES))
def vec(request: pytest.FixtureRequest) -> dict[str, Any]:
    return vectors(request.param)


def test_parser_found_vectors(vec: dict[str, Any]) -> None:
    assert len(vec["encryptions"]) > 0
    assert len(vec["exports"]) > 0
    assert [e["sequence number"] for e in vec["encryptions"]][:3] == [0, 1, 2]
    for name in ("ikmE", "pkEm", "skEm", "ikmR", "pkRm", "skRm", "enc", "shared_secret"):
        assert len(vec[name]) == 32, name
    for name in ("key_schedule_context", "secret", "key", "base_nonce", "exporter_secret"):
        assert vec[name], name


def test_derive_key_pair(vec: dict[str, Any]) -> None:
    hpke = Hpke(vec["aead"])
    assert hpke.derive_key_pair(vec["ikmE"]) == (vec["skEm"], vec["pkEm"])
    assert hpke.derive_key_pair(vec["ikmR"]) == (vec["skRm"], vec["pkRm"])
    assert x25519_public(vec["skRm"]) == vec["pkRm"]


def test_key_schedule_intermediates(vec: dict[str, Any]) -> None:
    """White-box: pins a failure to KEM, key schedule or nonce computation."""
    hpke = Hpke(vec["aead"])
    shared_secret, enc = hpke._encap(vec["pkRm"], vec["ikmE"], lambda n: b"")
    assert (shared_secret, enc) == (vec["shared_secret"], vec["enc"])
    assert Hpke._decap(vec["enc"], vec["skRm"], None) == vec["shared_secret"]
    secret, ksc = hpke._schedule(vec["shared_secret"], vec["info"])
    assert (secret, ksc) == (vec["secret"], vec["key_schedule_context"])
    ctx = hpke.setup_base_r(vec["enc"], vec["skRm"], vec["info"])
    assert ctx._key == vec["key"]
    assert ctx._exporter == vec["exporter_secret"]
    for e in vec["encryptions"]:
        ctx._seq = e["sequence number"]
        assert ctx._next_nonce() == e["nonce"]
    ctx._seq = 0
    assert ctx._next_nonce() == vec["base_nonce"]


def test_sender_and_recipient_contexts(vec: dict[str, Any]) -> None:
    hpke = Hpke(vec["aead"])
    enc, sender = hpke.setup_base_s(vec["pkRm"], vec["info"], ikm_e=vec["ikmE"])
    assert enc == vec["enc"]
    recipient = hpke.setup_base_r(enc, vec["skRm"], vec["info"])
    by_seq = {e["sequence number"]: e for e in vec["encryptions"]}
    for seq in range(max(by_seq) + 1):
        e = by_seq.get(seq)
        if e is None:  # advance both sides past sequence numbers the RFC skips
            assert recipient.open(b"", sender.seal(b"", b"filler")) == b"filler"
            continue
        ct = sender.seal(e["aad"], e["pt"])
        assert ct == e["ct"], f"seq {seq}"
        assert recipient.open(e["aad"], ct) == e["pt"]
    for context, length, value in vec["exports"]:
        assert sender.export(context, length) == value
        assert recipient.export(context, length) == value


def test_single_shot(vec: dict[str, Any]) -> None:
    hpke = Hpke(vec["aead"])
    first = vec["encryptions"][0]
    enc, ct = hpke.seal_base(vec["pkRm"], vec["info"], first["aad"], first["pt"], ikm_e=vec["ikmE"])
    assert (enc, ct) == (vec["enc"], first["ct"])
    assert hpke.open_base(enc, vec["skRm"], vec["info"], first["aad"], ct) == first["pt"]
    pt = hpke.open_base(enc, vec["skRm"], vec["info"], first["aad"], ct, pk_r=vec["pkRm"])
    assert pt == first["pt"]


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def test_tampering_is_detected(vec: dict[str, Any]) -> None:
    hpke = Hpke(vec["aead"])
    first = vec["encryptions"][0]
    enc, sk, info, aad, ct = vec["enc"], vec["skRm"], vec["info"], first["aad"], first["ct"]
    for i in (0, len(ct) // 2, len(ct) - 1):
        with pytest.raises(DecryptError):
            hpke.open_base(enc, sk, info, aad, _flip(ct, i))
    with pytest.raises(DecryptError):
        hpke.open_base(enc, sk, info, _flip(aad, 0), ct)
    with pytest.raises(DecryptError):
        hpke.open_base(enc, sk, info + b"x", aad, ct)
    with pytest.raises(DecryptError):
        hpke.open_base(enc, sk, info, aad, ct[:10])
    with pytest.raises(DecryptError):
        hpke.open_base(_flip(enc, 0), sk, info, aad, ct)
    with pytest.raises(DecryptError):
        hpke.open_base(enc, vec["skEm"], info, aad, ct)  # wrong private key
    with pytest.raises(DecryptError):
        hpke.open_base(enc, sk, info, aad, ct, pk_r=vec["pkEm"])  # mismatched public key


def test_failed_open_does_not_advance_sequence(vec: dict[str, Any]) -> None:
    hpke = Hpke(vec["aead"])
    recipient = hpke.setup_base_r(vec["enc"], vec["skRm"], vec["info"])
    first, second = vec["encryptions"][:2]
    with pytest.raises(DecryptError):
        recipient.open(first["aad"], _flip(first["ct"], 3))
    assert recipient.open(first["aad"], first["ct"]) == first["pt"]
    assert recipient.open(second["aad"], second["ct"]) == second["pt"]


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_low_order_public_keys_rejected(vec: dict[str, Any], point: bytes) -> None:
    hpke = Hpke(vec["aead"])
    with pytest.raises(CryptoError):
        hpke.seal_base(point, b"info", b"", b"pt")
    with pytest.raises(CryptoError):
        hpke.setup_base_s(point, b"info", ikm_e=vec["ikmE"])
    with pytest.raises(CryptoError):
        hpke.open_base(point, vec["skRm"], b"info", b"", bytes(32))
    with pytest.raises(CryptoError):
        x25519(vec["skRm"], point)


def test_malformed_keys_rejected() -> None:
    hpke = Hpke(AES128GCM)
    sk, pk = hpke.generate_key_pair()
    with pytest.raises(CryptoError):
        hpke.seal_base(pk[:31], b"", b"", b"pt")
    with pytest.raises(CryptoError):
        hpke.open_base(pk + b"\x00", sk, b"", b"", bytes(32))
    with pytest.raises(CryptoError):
        hpke.open_base(pk, sk[:16], b"", b"", bytes(32))
    with pytest.raises(CryptoError):
        hpke.generate_key_pair(lambda n: bytes(n - 1))


def test_sequence_number_overflow() -> None:
    hpke = Hpke(CHACHA20POLY1305)
    _, pk = hpke.generate_key_pair()
    _, sender = hpke.setup_base_s(pk, b"")
    sender._seq = (1 << 96) - 2
    sender.seal(b"", b"last message")
    with pytest.raises(CryptoError):
        sender.seal(b"", b"one too many")


def test_export_length_bounds() -> None:
    hpke = Hpke(AES128GCM)
    _, pk = hpke.generate_key_pair()
    _, sender = hpke.setup_base_s(pk, b"")
    assert len(sender.export(b"ctx", 255 * 32)) == 255 * 32
    assert sender.export(b"ctx", 100)[:32] != sender.export(b"ctx", 32)  # L is bound in
    with pytest.raises(ValueError):
        sender.export(b"ctx", 255 * 32 + 1)
    with pytest.raises(ValueError):
        sender.export(b"ctx", -1)


@settings(max_examples=25, deadline=None)
@given(
    suite=st.sampled_from(sorted(SUITES)),
    info=st.binary(max_size=64),
    aad=st.binary(max_size=64),
    pt=st.binary(max_size=300),
)
def test_single_shot_roundtrip(suite: str, info: bytes, aad: bytes, pt: bytes) -> None:
    hpke = Hpke(SUITES[suite][1])
    sk, pk = hpke.generate_key_pair()
    enc, ct = hpke.seal_base(pk, info, aad, pt)
    assert len(ct) == len(pt) + 16
    assert hpke.open_base(enc, sk, info, aad, ct) == pt
    assert hpke.open_base(enc, sk, info, aad, ct, pk_r=pk) == pt


def test_randomness_is_injected() -> None:
    hpke = Hpke(AES128GCM)
    _, pk = _derive_key_pair(b"recipient ikm")
    fixed = hpke.seal_base(pk, b"i", b"a", b"p", random=lambda n: b"\x42" * n)
    assert fixed == hpke.seal_base(pk, b"i", b"a", b"p", random=lambda n: b"\x42" * n)
    assert fixed[0] == x25519_public(b"\x42" * 32)
    assert hpke.seal_base(pk, b"i", b"a", b"p")[0] != fixed[0]


# --- crypto.primitives -------------------------------------------------------------------


def test_hkdf_rfc5869_case_1() -> None:
    prk = hkdf_extract(bytes(range(13)), b"\x0b" * 22)
    assert prk == bytes.fromhex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
    okm = hkdf_expand(prk, bytes(range(0xF0, 0xFA)), 42)
    assert okm == bytes.fromhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    assert hkdf_expand(prk, b"x", 16) == hkdf_expand(prk, b"x", 80)[:16]
    with pytest.raises(ValueError):
        hkdf_expand(prk, b"", 255 * 32 + 1)


def test_sha256_and_hmac() -> None:
    assert sha256(b"abc") == bytes.fromhex(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    # RFC 4231 test case 2
    assert hmac_sha256(b"Jefe", b"what do ya want for nothing?") == bytes.fromhex(
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_x25519_rfc7748() -> None:
    a = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    b = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    a_pub, b_pub = x25519_public(a), x25519_public(b)
    assert a_pub == bytes.fromhex(
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    )
    shared = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert x25519(a, b_pub) == x25519(b, a_pub) == shared


def test_ed25519_rfc8032_and_tampering() -> None:
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    pub = ed25519_public(seed)
    assert pub == bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    assert ed25519_sign(seed, b"") == bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
        "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    msg = b"handover: bed 12"
    sig = ed25519_sign(seed, msg)
    assert ed25519_verify(pub, msg, sig)
    assert not ed25519_verify(pub, b"handover: bed 13", sig)
    assert not ed25519_verify(pub, msg, _flip(sig, 0))
    assert not ed25519_verify(ed25519_public(bytes(32)), msg, sig)
    assert not ed25519_verify(pub[:31], msg, sig)
    assert not ed25519_verify(pub, msg, sig[:63])
    assert not ed25519_verify(bytes(32), msg, sig)
    with pytest.raises(CryptoError):
        ed25519_sign(seed[:31], msg)


@pytest.mark.parametrize("aead", [AES128GCM, CHACHA20POLY1305], ids=["aes", "chacha"])
def test_aead_roundtrip_and_failures(aead: Aead) -> None:
    key, nonce = bytes(range(aead.key_size)), bytes(aead.nonce_size)
    ct = aead.seal(key, nonce, b"aad", b"plaintext")
    assert len(ct) == len(b"plaintext") + 16
    assert aead.open(key, nonce, b"aad", ct) == b"plaintext"
    assert aead.open(key, nonce, b"", aead.seal(key, nonce, b"", b"")) == b""
    for bad in (_flip(ct, 0), _flip(ct, len(ct) - 1), ct[:15], b""):
        with pytest.raises(DecryptError):
            aead.open(key, nonce, b"aad", bad)
    with pytest.raises(DecryptError):
        aead.open(key, nonce, b"aaD", ct)
    with pytest.raises(DecryptError):
        aead.open(_flip(key, 0), nonce, b"aad", ct)
    with pytest.raises(CryptoError):
        aead.seal(key[:-1], nonce, b"", b"")
    with pytest.raises(CryptoError):
        aead.open(key, nonce[:-1], b"aad", ct)
