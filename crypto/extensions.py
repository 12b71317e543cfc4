"""MLS extensions and capabilities (RFC 9420 §7.2, §13)."""

from typing import Annotated

from crypto.codec import OPAQUE, U16, Reader, Struct, Vec, struct
from crypto.errors import DecodeError

PROTOCOL_VERSION_MLS10 = 1

# Extension types (RFC 9420 §17.3).
APPLICATION_ID = 0x0001
RATCHET_TREE = 0x0002
REQUIRED_CAPABILITIES = 0x0003
EXTERNAL_PUB = 0x0004
EXTERNAL_SENDERS = 0x0005
DEFAULT_EXTENSIONS = frozenset({APPLICATION_ID, RATCHET_TREE, REQUIRED_CAPABILITIES,
                                EXTERNAL_PUB, EXTERNAL_SENDERS})
# Liaison's own, in the private-use range: the room state carried inside the group.
LIAISON_ROOM_STATE = 0xF0A1

# Where each default extension may appear.
LEAF_NODE_ALLOWED = frozenset({APPLICATION_ID})
GROUP_CONTEXT_ALLOWED = frozenset({REQUIRED_CAPABILITIES, EXTERNAL_SENDERS})
GROUP_INFO_ALLOWED = frozenset({RATCHET_TREE, EXTERNAL_PUB})


@struct
class Extension(Struct):
    extension_type: Annotated[int, U16]
    extension_data: Annotated[bytes, OPAQUE]


@struct
class Capabilities(Struct):
    versions: Annotated[list[int], Vec(U16)]
    cipher_suites: Annotated[list[int], Vec(U16)]
    extensions: Annotated[list[int], Vec(U16)]
    proposals: Annotated[list[int], Vec(U16)]
    credentials: Annotated[list[int], Vec(U16)]


@struct
class RequiredCapabilities(Struct):
    extension_types: Annotated[list[int], Vec(U16)]
    proposal_types: Annotated[list[int], Vec(U16)]
    credential_types: Annotated[list[int], Vec(U16)]


def find(extensions: list[Extension], ext_type: int) -> bytes | None:
    for e in extensions:
        if e.extension_type == ext_type:
            return e.extension_data
    return None


def check_unique(extensions: list[Extension]) -> None:
    """RFC 9420 §13.4: an extension list MUST NOT contain the same type twice."""
    seen = {e.extension_type for e in extensions}
    if len(seen) != len(extensions):
        raise DecodeError("duplicate extension type")


def decode_u16_list(data: bytes) -> list[int]:
    r = Reader(data)
    v = Vec(U16).decode(r)
    r.done()
    return v
