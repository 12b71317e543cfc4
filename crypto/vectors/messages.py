"""messages.json: every wire struct decodes and re-encodes to the same bytes (RFC 9420 §6-§12).

Decoding runs under ``fresh_encoding`` so re-serialization goes through every encoder
instead of echoing the wire bytes cached at decode time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from crypto import framing as fr
from crypto import proposals as prop
from crypto.cipher_suite import suite
from crypto.codec import Struct, fresh_encoding
from crypto.commit import Commit
from crypto.message import MLSMessage
from crypto.ratchet_tree import RatchetTree
from crypto.vectors.common import Case, expect, unhex
from crypto.welcome import GroupSecrets

T = TypeVar("T")

# MLSMessage fields: (wire format, content type of a PublicMessage or None).
_MESSAGES: dict[str, tuple[int, int | None]] = {
    "mls_welcome": (fr.WELCOME, None),
    "mls_group_info": (fr.GROUP_INFO, None),
    "mls_key_package": (fr.KEY_PACKAGE, None),
    "public_message_application": (fr.PUBLIC_MESSAGE, fr.APPLICATION_CONTENT),
    "public_message_proposal": (fr.PUBLIC_MESSAGE, fr.PROPOSAL_CONTENT),
    "public_message_commit": (fr.PUBLIC_MESSAGE, fr.COMMIT_CONTENT),
    "private_message": (fr.PRIVATE_MESSAGE, None),
}

_STRUCTS: dict[str, type[Struct]] = {
    "group_secrets": GroupSecrets,
    "add_proposal": prop.Add,
    "update_proposal": prop.Update,
    "remove_proposal": prop.Remove,
    "pre_shared_key_proposal": prop.PreSharedKey,
    "re_init_proposal": prop.ReInit,
    "external_init_proposal": prop.ExternalInit,
    "group_context_extensions_proposal": prop.GroupContextExtensions,
    "commit": Commit,
}


def _round_trip(name: str, data: bytes, decode: Callable[[bytes], T],
                encode: Callable[[T], bytes]) -> T:
    """Decode, re-encode and compare; the decoded value is returned for further checks."""
    with fresh_encoding():
        value = decode(data)
        expect(f"{name} re-encoded", encode(value), data)
    return value


def check(case: Case) -> None:
    for name, (wire_format, content_type) in _MESSAGES.items():
        msg = _round_trip(name, unhex(case[name]), MLSMessage.deserialize, MLSMessage.serialize)
        expect(f"{name} wire format", msg.wire_format, wire_format)
        if content_type is not None:
            assert isinstance(msg.body, fr.PublicMessage)
            expect(f"{name} content type", msg.body.content.content_type, content_type)
    # Tree nodes hold no suite-dependent fields, so any implemented suite decodes them.
    _round_trip("ratchet_tree", unhex(case["ratchet_tree"]),
                lambda b: RatchetTree.from_wire(suite(1), b), RatchetTree.to_wire)
    for name, cls in _STRUCTS.items():
        _round_trip(name, unhex(case[name]), cls.deserialize, cls.serialize)
