"""The GroupContext (RFC 9420 §8.1): what every member agrees the group is, per epoch."""

from typing import Annotated

from crypto.codec import OPAQUE, U16, U64, Struct, Vec, struct
from crypto.extensions import Extension


@struct
class GroupContext(Struct):
    version: Annotated[int, U16]
    cipher_suite: Annotated[int, U16]
    group_id: Annotated[bytes, OPAQUE]
    epoch: Annotated[int, U64]
    tree_hash: Annotated[bytes, OPAQUE]
    confirmed_transcript_hash: Annotated[bytes, OPAQUE]
    extensions: Annotated[list[Extension], Vec(Extension)]
