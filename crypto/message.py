"""MLSMessage (RFC 9420 §6): the envelope for everything a device sends or publishes."""

from __future__ import annotations

from dataclasses import dataclass

from crypto.codec import U16, Reader, Struct
from crypto.errors import DecodeError, UnsupportedError
from crypto.extensions import PROTOCOL_VERSION_MLS10
from crypto.framing import (
    GROUP_INFO,
    KEY_PACKAGE,
    PRIVATE_MESSAGE,
    PUBLIC_MESSAGE,
    WELCOME,
    PrivateMessage,
    PublicMessage,
)
from crypto.key_package import KeyPackage
from crypto.welcome import GroupInfo, Welcome

Body = PublicMessage | PrivateMessage | Welcome | GroupInfo | KeyPackage
_WIRE = {PublicMessage: PUBLIC_MESSAGE, PrivateMessage: PRIVATE_MESSAGE, Welcome: WELCOME,
         GroupInfo: GROUP_INFO, KeyPackage: KEY_PACKAGE}
_DECODE = {v: k for k, v in _WIRE.items()}


@dataclass(frozen=True)
class MLSMessage:
    body: Body

    @property
    def wire_format(self) -> int:
        return _WIRE[type(self.body)]

    def serialize(self) -> bytes:
        w = bytearray()
        U16.encode(w, PROTOCOL_VERSION_MLS10)
        U16.encode(w, self.wire_format)
        self.body.encode_into(w)
        return bytes(w)

    @classmethod
    def deserialize(cls, data: bytes) -> MLSMessage:
        r = Reader(bytes(data))
        if r.u16() != PROTOCOL_VERSION_MLS10:
            raise UnsupportedError("protocol version is not mls10")
        kind: type[Struct] | type[PublicMessage] | None = _DECODE.get(r.u16())
        if kind is None:
            raise DecodeError("unknown wire format")
        body = kind.decode_from(r)
        r.done()
        return cls(body)  # type: ignore[arg-type]
