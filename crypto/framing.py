"""Message framing (RFC 9420 §6): content, signatures, membership tags, PrivateMessage.

PrivateMessage hides sender and content from the relay: the content is encrypted under the
sender's secret-tree key, the sender's position under the epoch's sender-data key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated

from crypto.cipher_suite import CipherSuite, Random
from crypto.codec import OPAQUE, U8, U16, U32, U64, Fixed, Reader, Struct, opaque, struct
from crypto.commit import Commit
from crypto.errors import DecodeError, DecryptError, ValidationError
from crypto.extensions import PROTOCOL_VERSION_MLS10
from crypto.proposals import Proposal
from crypto.secret_tree import APPLICATION, HANDSHAKE, KeyUse, SecretTree

# Wire formats
PUBLIC_MESSAGE = 1
PRIVATE_MESSAGE = 2
WELCOME = 3
GROUP_INFO = 4
KEY_PACKAGE = 5

# Sender types
MEMBER = 1
EXTERNAL = 2
NEW_MEMBER_PROPOSAL = 3
NEW_MEMBER_COMMIT = 4

# Content types
APPLICATION_CONTENT = 1
PROPOSAL_CONTENT = 2
COMMIT_CONTENT = 3


@struct
class Sender(Struct):
    sender_type: int
    index: int = 0  # leaf_index for members, sender_index for external senders

    def _encode(self, w: bytearray) -> None:
        U8.encode(w, self.sender_type)
        if self.sender_type in (MEMBER, EXTERNAL):
            U32.encode(w, self.index)

    @classmethod
    def _decode(cls, r: Reader) -> Sender:
        t = r.u8()
        if t in (MEMBER, EXTERNAL):
            return cls(t, r.u32())
        if t in (NEW_MEMBER_PROPOSAL, NEW_MEMBER_COMMIT):
            return cls(t)
        raise DecodeError(f"invalid sender type {t}")


Content = bytes | Proposal | Commit


def _content_type(content: Content) -> int:
    if isinstance(content, bytes):
        return APPLICATION_CONTENT
    return PROPOSAL_CONTENT if isinstance(content, Proposal) else COMMIT_CONTENT


def _encode_body(w: bytearray, content: Content) -> None:
    if isinstance(content, bytes):
        OPAQUE.encode(w, content)
    else:
        content.encode_into(w)


def _decode_body(r: Reader, content_type: int) -> Content:
    if content_type == APPLICATION_CONTENT:
        return r.opaque()
    if content_type == PROPOSAL_CONTENT:
        return Proposal.decode_from(r)
    if content_type == COMMIT_CONTENT:
        return Commit.decode_from(r)
    raise DecodeError(f"invalid content type {content_type}")


@struct
class FramedContent(Struct):
    group_id: bytes
    epoch: int
    sender: Sender
    authenticated_data: bytes
    content: Content

    @property
    def content_type(self) -> int:
        return _content_type(self.content)

    def _encode(self, w: bytearray) -> None:
        OPAQUE.encode(w, self.group_id)
        U64.encode(w, self.epoch)
        self.sender.encode_into(w)
        OPAQUE.encode(w, self.authenticated_data)
        U8.encode(w, self.content_type)
        _encode_body(w, self.content)

    @classmethod
    def _decode(cls, r: Reader) -> FramedContent:
        gid, epoch, sender, ad = r.opaque(), r.u64(), Sender.decode_from(r), r.opaque()
        return cls(gid, epoch, sender, ad, _decode_body(r, r.u8()))


@dataclass(frozen=True)
class AuthData:
    """FramedContentAuthData: a confirmation tag only for commits."""

    signature: bytes
    confirmation_tag: bytes | None = None

    def encode_into(self, w: bytearray) -> None:
        OPAQUE.encode(w, self.signature)
        if self.confirmation_tag is not None:
            OPAQUE.encode(w, self.confirmation_tag)

    @classmethod
    def decode_from(cls, r: Reader, content_type: int) -> AuthData:
        sig = r.opaque()
        return cls(sig, r.opaque() if content_type == COMMIT_CONTENT else None)


@dataclass(frozen=True)
class AuthenticatedContent:
    wire_format: int
    content: FramedContent
    auth: AuthData

    def serialize(self) -> bytes:
        w = bytearray()
        U16.encode(w, self.wire_format)
        self.content.encode_into(w)
        self.auth.encode_into(w)
        return bytes(w)

    @classmethod
    def deserialize(cls, data: bytes) -> AuthenticatedContent:
        r = Reader(data)
        wf = r.u16()
        content = FramedContent.decode_from(r)
        auth = AuthData.decode_from(r, content.content_type)
        r.done()
        return cls(wf, content, auth)

    def proposal_ref(self, cs: CipherSuite) -> bytes:
        return cs.ref_hash(b"MLS 1.0 Proposal Reference", self.serialize())

    def confirmed_transcript_input(self) -> bytes:
        """ConfirmedTranscriptHashInput: wire format, content and signature."""
        w = bytearray()
        U16.encode(w, self.wire_format)
        self.content.encode_into(w)
        OPAQUE.encode(w, self.auth.signature)
        return bytes(w)


def content_tbs(wire_format: int, content: FramedContent, group_context: bytes | None) -> bytes:
    w = bytearray()
    U16.encode(w, PROTOCOL_VERSION_MLS10)
    U16.encode(w, wire_format)
    content.encode_into(w)
    if content.sender.sender_type in (MEMBER, NEW_MEMBER_COMMIT):
        assert group_context is not None
        w += group_context
    return bytes(w)


def sign(cs: CipherSuite, sig_priv: bytes, wire_format: int, content: FramedContent,
         group_context: bytes | None) -> bytes:
    return cs.sign_with_label(sig_priv, b"FramedContentTBS",
                              content_tbs(wire_format, content, group_context))


def verify(cs: CipherSuite, sig_pub: bytes, ac: AuthenticatedContent,
           group_context: bytes | None) -> None:
    if not cs.verify_with_label(sig_pub, b"FramedContentTBS",
                                content_tbs(ac.wire_format, ac.content, group_context),
                                ac.auth.signature):
        raise ValidationError("message signature is invalid")


# -- PublicMessage -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PublicMessage:
    content: FramedContent
    auth: AuthData
    membership_tag: bytes | None

    def encode_into(self, w: bytearray) -> None:
        self.content.encode_into(w)
        self.auth.encode_into(w)
        if self.content.sender.sender_type == MEMBER:
            assert self.membership_tag is not None
            OPAQUE.encode(w, self.membership_tag)

    @classmethod
    def decode_from(cls, r: Reader) -> PublicMessage:
        content = FramedContent.decode_from(r)
        auth = AuthData.decode_from(r, content.content_type)
        tag = r.opaque() if content.sender.sender_type == MEMBER else None
        return cls(content, auth, tag)

    def authenticated(self) -> AuthenticatedContent:
        return AuthenticatedContent(PUBLIC_MESSAGE, self.content, self.auth)


def _tbm(ac: AuthenticatedContent, group_context: bytes) -> bytes:
    w = bytearray(content_tbs(PUBLIC_MESSAGE, ac.content, group_context))
    ac.auth.encode_into(w)
    return bytes(w)


def protect_public(cs: CipherSuite, ac: AuthenticatedContent, membership_key: bytes,
                   group_context: bytes) -> PublicMessage:
    if ac.content.content_type == APPLICATION_CONTENT:
        raise ValidationError("application data must be sent as a PrivateMessage")
    tag = None
    if ac.content.sender.sender_type == MEMBER:
        tag = cs.mac(membership_key, _tbm(ac, group_context))
    return PublicMessage(ac.content, ac.auth, tag)


def verify_membership_tag(cs: CipherSuite, msg: PublicMessage, membership_key: bytes,
                          group_context: bytes) -> None:
    if msg.content.sender.sender_type != MEMBER:
        return
    assert msg.membership_tag is not None
    if not cs.verify_mac(membership_key, _tbm(msg.authenticated(), group_context),
                         msg.membership_tag):
        raise ValidationError("membership tag is invalid")


# -- PrivateMessage ------------------------------------------------------------------------------
@struct
class PrivateMessage(Struct):
    group_id: Annotated[bytes, OPAQUE]
    epoch: Annotated[int, U64]
    content_type: Annotated[int, U8]
    authenticated_data: Annotated[bytes, OPAQUE]
    encrypted_sender_data: Annotated[bytes, OPAQUE]
    ciphertext: Annotated[bytes, OPAQUE]


@struct
class SenderData(Struct):
    leaf_index: Annotated[int, U32]
    generation: Annotated[int, U32]
    reuse_guard: Annotated[bytes, Fixed(4)]


def sender_data_key_nonce(
    cs: CipherSuite, secret: bytes, ciphertext: bytes
) -> tuple[bytes, bytes]:
    sample = ciphertext[: cs.nh]
    return (cs.expand_with_label(secret, b"key", sample, cs.nk),
            cs.expand_with_label(secret, b"nonce", sample, cs.nn))


def _aad(group_id: bytes, epoch: int, content_type: int) -> bytes:
    return opaque(group_id) + epoch.to_bytes(8, "big") + bytes((content_type,))


def _xor_guard(nonce: bytes, guard: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(guard, nonce[:4], strict=True)) + nonce[4:]


def protect_private(
    cs: CipherSuite,
    ac: AuthenticatedContent,
    secret_tree: SecretTree,
    sender_data_secret: bytes,
    padding: int = 0,
    random: Random = os.urandom,
) -> PrivateMessage:
    """Encrypt authenticated content; consumes one generation of the sender's ratchet."""
    content = ac.content
    if content.sender.sender_type != MEMBER:
        raise ValidationError("only members send PrivateMessages")
    ct_type = content.content_type
    kind = APPLICATION if ct_type == APPLICATION_CONTENT else HANDSHAKE
    generation, key, nonce = secret_tree.next_key(content.sender.index, kind)
    guard = random(4)
    pt = bytearray()
    _encode_body(pt, content.content)
    ac.auth.encode_into(pt)
    pt += bytes(padding)
    aad = _aad(content.group_id, content.epoch, ct_type) + opaque(content.authenticated_data)
    ciphertext = cs.aead.seal(key, _xor_guard(nonce, guard), aad, bytes(pt))
    sd_key, sd_nonce = sender_data_key_nonce(cs, sender_data_secret, ciphertext)
    sender_data = SenderData(content.sender.index, generation, guard).serialize()
    esd = cs.aead.seal(sd_key, sd_nonce, _aad(content.group_id, content.epoch, ct_type),
                       sender_data)
    return PrivateMessage(content.group_id, content.epoch, ct_type, content.authenticated_data,
                          esd, ciphertext)


def unprotect_private(
    cs: CipherSuite, msg: PrivateMessage, secret_tree: SecretTree, sender_data_secret: bytes
) -> tuple[AuthenticatedContent, KeyUse]:
    """Decrypt a PrivateMessage; the caller consumes the KeyUse once the content checks out."""
    sd_key, sd_nonce = sender_data_key_nonce(cs, sender_data_secret, msg.ciphertext)
    sd_aad = _aad(msg.group_id, msg.epoch, msg.content_type)
    try:
        sd = SenderData.deserialize(
            cs.aead.open(sd_key, sd_nonce, sd_aad, msg.encrypted_sender_data))
    except DecodeError:
        raise DecryptError("sender data is malformed") from None
    kind = APPLICATION if msg.content_type == APPLICATION_CONTENT else HANDSHAKE
    use = secret_tree.key_for(sd.leaf_index, kind, sd.generation)
    aad = sd_aad + opaque(msg.authenticated_data)
    pt = cs.aead.open(use.key, _xor_guard(use.nonce, sd.reuse_guard), aad, msg.ciphertext)
    r = Reader(pt)
    body = _decode_body(r, msg.content_type)
    auth = AuthData.decode_from(r, msg.content_type)
    if any(pt[r.pos :]):
        raise DecodeError("PrivateMessage padding is not all zero")
    content = FramedContent(msg.group_id, msg.epoch, Sender(MEMBER, sd.leaf_index),
                            msg.authenticated_data, body)
    return AuthenticatedContent(PRIVATE_MESSAGE, content, auth), use
