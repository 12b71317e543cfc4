"""Pre-shared keys (RFC 9420 §8.4): external PSKs and resumption PSKs folded into an epoch."""

from typing import Annotated

from crypto.cipher_suite import CipherSuite
from crypto.codec import OPAQUE, U8, U16, U64, Reader, Struct, struct
from crypto.errors import DecodeError

EXTERNAL = 1
RESUMPTION = 2

USAGE_APPLICATION = 1
USAGE_REINIT = 2
USAGE_BRANCH = 3


@struct
class PreSharedKeyID(Struct):
    psktype: int
    psk_id: bytes  # external
    usage: int  # resumption
    psk_group_id: bytes  # resumption
    psk_epoch: int  # resumption
    psk_nonce: bytes

    def _encode(self, w: bytearray) -> None:
        U8.encode(w, self.psktype)
        if self.psktype == EXTERNAL:
            OPAQUE.encode(w, self.psk_id)
        else:
            U8.encode(w, self.usage)
            OPAQUE.encode(w, self.psk_group_id)
            U64.encode(w, self.psk_epoch)
        OPAQUE.encode(w, self.psk_nonce)

    @classmethod
    def _decode(cls, r: Reader) -> "PreSharedKeyID":
        t = r.u8()
        if t == EXTERNAL:
            return cls(t, r.opaque(), 0, b"", 0, r.opaque())
        if t == RESUMPTION:
            usage = r.u8()
            if usage not in (USAGE_APPLICATION, USAGE_REINIT, USAGE_BRANCH):
                raise DecodeError(f"invalid resumption PSK usage {usage}")
            return cls(t, b"", usage, r.opaque(), r.u64(), r.opaque())
        raise DecodeError(f"invalid PSK type {t}")

    @classmethod
    def external(cls, psk_id: bytes, nonce: bytes) -> "PreSharedKeyID":
        return cls(EXTERNAL, psk_id, 0, b"", 0, nonce)


@struct
class _PSKLabel(Struct):
    id: PreSharedKeyID
    index: Annotated[int, U16]
    count: Annotated[int, U16]


def psk_secret(cs: CipherSuite, psks: list[tuple[PreSharedKeyID, bytes]]) -> bytes:
    """Chain every PSK of a commit into one secret; all-zero when there are none."""
    secret = bytes(cs.nh)
    for i, (psk_id, psk) in enumerate(psks):
        extracted = cs.extract(bytes(cs.nh), psk)
        label = _PSKLabel(psk_id, i, len(psks)).serialize()
        psk_input = cs.expand_with_label(extracted, b"derived psk", label, cs.nh)
        secret = cs.extract(psk_input, secret)
    return secret
