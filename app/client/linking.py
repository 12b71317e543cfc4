"""Linking a new device of the same user, and handing it the history of the user's rooms.

The new device registers an Ed25519 key and an X25519 key with the relay and shows a short
code; an existing device approves it with the user's TOTP code, adds it to every room it is in
(MLS commits, as for any new device of a member), then sends it those rooms' history: one
archive encrypted under a fresh key (crypto/document.py), uploaded as a blob only the new
device may fetch, its key sealed to the new device's X25519 key together with the approving
device's signature, so the relay sees neither the history nor its key and cannot forge it.
The new device imports the archive in one transaction, once its rooms' Welcomes have arrived;
what it already has (delivered live meanwhile) is not stored twice.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from pydantic import BaseModel, ConfigDict, ValidationError

from app.client.relay_api import RelayClient, RelayError
from crypto.document import DocumentEncryptor, DocumentKey, decrypt_iter
from crypto.errors import MLSError
from crypto.primitives import ed25519_sign, ed25519_verify
from protocol import rest
from protocol.auth import history_message, link_proof_message
from protocol.encoding import B64
from protocol.problems import Code
from storage.attachments import Attachment
from storage.history import EditedVersion, HistoryEntry, HistoryStore
from storage.local_store import LocalStore
from storage.messages import MessageKind, MessageRef, NewMessage, Priority
from storage.receipts import Receipt
from storage.status import MessageStatus

if TYPE_CHECKING:
    from app.client.engine import Engine

POLL_SECONDS = 0.25
LINK_WAIT_SECONDS = 600.0  # the code's own lifetime on the relay
ARCHIVE_VERSION = 1
_SEALED = 32 + 32 + 64  # archive key, its ciphertext's SHA-256, the approver's signature


class LinkError(Exception):
    """Linking or its history failed; the message says why, for the UI."""


class LinkExpired(LinkError):
    """The relay no longer knows the link: expired, withdrawn, or its history's day is over."""


# -- the archive (compact keys: a shift's worth of history is thousands of messages) ----------
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Ref(_Model):
    d: str  # sender device
    c: str  # client id


class _Attachment(_Model):
    blob: str
    name: str
    type: str
    key: B64
    sha256: B64
    size: int


class _Version(_Model):
    edit: _Ref
    body: str
    at: float


class _Receipt(_Model):
    user: str
    status: MessageStatus
    at: float


class _Message(_Model):
    ref: _Ref
    room: str
    user: str
    body: str | None
    local_ts: float
    server_ts: float | None = None
    kind: MessageKind = MessageKind.TEXT
    priority: Priority = Priority.NORMAL
    status: MessageStatus = MessageStatus.DELIVERED
    reply_to: _Ref | None = None
    edited_at: float | None = None
    recalled_at: float | None = None
    attachments: list[_Attachment] = []
    versions: list[_Version] = []
    receipts: list[_Receipt] = []


class HistoryArchive(_Model):
    """What one device hands a newly linked device of its user: its rooms' messages."""

    version: Literal[1] = ARCHIVE_VERSION
    rooms: list[str]
    messages: list[_Message]


def _ref(r: MessageRef) -> _Ref:
    return _Ref(d=r.sender_device, c=r.client_id)


def _message_ref(r: _Ref) -> MessageRef:
    return MessageRef(r.d, r.c)


def to_archive(rooms: list[str], entries: list[HistoryEntry]) -> HistoryArchive:
    messages = []
    for e in entries:
        m = e.message
        messages.append(_Message(
            ref=_ref(m.ref), room=m.room_id, user=m.sender_user, body=m.body,
            local_ts=m.local_ts, server_ts=m.server_ts, kind=m.kind, priority=m.priority,
            status=m.status, reply_to=None if m.reply_to is None else _ref(m.reply_to),
            edited_at=e.edited_at, recalled_at=e.recalled_at,
            attachments=[_Attachment(blob=a.blob_id, name=a.file_name, type=a.media_type,
                                     key=a.key.key, sha256=a.key.ciphertext_sha256,
                                     size=a.key.plaintext_size) for a in m.attachments],
            versions=[_Version(edit=_ref(v.edit), body=v.body, at=v.at) for v in e.versions],
            receipts=[_Receipt(user=r.user_id, status=r.status, at=r.at) for r in e.receipts],
        ))
    return HistoryArchive(rooms=rooms, messages=messages)


def from_archive(archive: HistoryArchive, rooms: set[str]) -> list[HistoryEntry]:
    """The archive's messages of ``rooms`` (those this device joined), as storage takes them."""
    return [
        HistoryEntry(
            message=NewMessage(
                ref=_message_ref(m.ref), room_id=m.room, sender_user=m.user, body=m.body,
                local_ts=m.local_ts, server_ts=m.server_ts, kind=m.kind, priority=m.priority,
                status=m.status,
                reply_to=None if m.reply_to is None else _message_ref(m.reply_to),
                attachments=tuple(
                    Attachment(blob_id=a.blob, file_name=a.name, media_type=a.type,
                               key=DocumentKey(a.key, a.sha256, a.size))
                    for a in m.attachments),
            ),
            edited_at=m.edited_at,
            recalled_at=m.recalled_at,
            versions=tuple(EditedVersion(_message_ref(v.edit), v.body, v.at)
                           for v in m.versions),
            receipts=tuple(Receipt(r.user, r.status, r.at) for r in m.receipts),
        )
        for m in archive.messages
        if m.room in rooms
    ]


# -- the new device ---------------------------------------------------------------------------
PENDING_HISTORY = "pending_history"  # settings key: what fetching the history needs, until done


class PendingHistory(BaseModel):
    """Kept in the new device's encrypted settings from its approval until its history is
    imported: a device that stops in between (closed, crashed, a phone's battery) fetches the
    history when it next starts, while the relay still keeps it (a day)."""

    model_config = ConfigDict(frozen=True)

    link_id: str
    box_key: B64  # the X25519 private key the history's key is sealed to

    def save(self, store: LocalStore) -> None:
        store.settings.set(PENDING_HISTORY, self.model_dump(mode="json"))

    @classmethod
    def load(cls, store: LocalStore) -> PendingHistory | None:
        value = store.settings.get(PENDING_HISTORY)
        return None if value is None else cls.model_validate(value)

    @staticmethod
    def done(store: LocalStore) -> None:
        store.settings.delete(PENDING_HISTORY)


@dataclass
class LinkRequest:
    """A new device waiting for approval: show ``code``, then ``complete()``."""

    code: str
    expires_in: int
    _relay_url: str
    _link_id: str = field(repr=False)
    _seed: bytes = field(repr=False)
    _box: PrivateKey = field(repr=False)
    _open: Callable[[bytes, rest.EnrollResponse, PendingHistory], Awaitable[Engine]] = field(
        repr=False)

    @classmethod
    async def start(cls, relay_url: str, device_name: str,
                    open_profile: Callable[[bytes, rest.EnrollResponse, PendingHistory],
                                           Awaitable[Engine]]
                    ) -> LinkRequest:
        """Register fresh keys with the relay; ``open_profile`` makes the profile once the
        device exists (as enrolment does)."""
        seed, box = os.urandom(32), PrivateKey.generate()
        async with RelayClient(relay_url) as relay:
            started = await relay.start_link(device_name, seed, bytes(box.public_key))
        return cls(started.code, started.expires_in, relay_url, started.link_id, seed, box,
                   open_profile)

    async def withdraw(self) -> bool:
        """The user gave up waiting: the code stops working at once, so that no one approves
        a device whose keys this device is about to forget. False when it was approved
        already (too late: the new device exists; revoke it from another one)."""
        async with RelayClient(self._relay_url) as relay:
            try:
                await relay.withdraw_link(self._link_id)
            except RelayError as e:
                if e.code is Code.CONFLICT:
                    return False
                if e.code is not Code.NOT_FOUND:  # expired meanwhile: withdrawn all the same
                    raise
        return True

    async def complete(self, *, timeout: float = LINK_WAIT_SECONDS) -> Engine:
        """Wait for approval, then open this device's profile (not started yet)."""
        status = await _link_status(self._relay_url, self._link_id, lambda s: s.approved,
                                    timeout, "the code was not approved")
        assert status.enrollment is not None  # approved
        return await self._open(self._seed, status.enrollment, self.pending)

    @property
    def pending(self) -> PendingHistory:
        return PendingHistory(link_id=self._link_id, box_key=bytes(self._box))

    async def receive_history(self, engine: Engine, relay: RelayClient, store: LocalStore,
                              *, timeout: float) -> int:
        """Fetch, check and import the history once its rooms are joined; how many messages
        were new. The engine must be online, for its rooms' Welcomes to arrive."""
        return await receive_history(self._relay_url, self.pending, engine, relay, store,
                                     timeout=timeout)


async def receive_history(relay_url: str, pending: PendingHistory, engine: Engine,
                          relay: RelayClient, store: LocalStore, *, timeout: float) -> int:
    """What ``LinkRequest.receive_history`` does, from what ``PendingHistory`` kept."""
    status = await _link_status(relay_url, pending.link_id, lambda s: s.history is not None,
                                timeout, "the approving device sent no history")
    assert status.history is not None and status.approved_by is not None
    key, sha256 = await _opened(status.history.sealed_key, PrivateKey(pending.box_key),
                                engine.device_id, status.approved_by, relay, engine.user_id)
    ciphertext = b"".join([piece async for piece in relay.download_blob(
        status.history.blob_id)])
    try:
        archive = HistoryArchive.model_validate_json(
            b"".join(decrypt_iter([ciphertext], key, expected_hash=sha256)))
    except (MLSError, ValidationError) as e:  # wrong key, tampered, truncated, garbled
        raise LinkError(f"the history archive is unreadable: {e}") from None
    wanted = set(archive.rooms)
    try:
        async with asyncio.timeout(timeout):
            while not wanted <= {r.id for r in engine.rooms()}:
                await asyncio.sleep(POLL_SECONDS)
    except TimeoutError:
        pass  # import the rooms that were joined; the others' history is of no use
    joined = wanted & {r.id for r in engine.rooms()}
    entries = from_archive(archive, joined)
    with store.db.transaction():
        added = HistoryStore(store.db).import_(entries)
        PendingHistory.done(store)
    return added


async def _link_status(relay_url: str, link_id: str, ready: Callable[[rest.LinkStatus], bool],
                       timeout: float, missing: str) -> rest.LinkStatus:
    """Poll the link until ``ready``; LinkError when it takes longer than ``timeout`` or the
    link expired."""
    async with RelayClient(relay_url) as relay:
        try:
            async with asyncio.timeout(timeout):
                while not ready(status := await relay.link_status(link_id)):
                    await asyncio.sleep(POLL_SECONDS)
        except TimeoutError:
            raise LinkError(f"no answer in time: {missing}") from None
        except RelayError as e:
            if e.code is Code.NOT_FOUND:
                raise LinkExpired("the link code expired: start again") from None
            raise
    return status


async def _opened(sealed: bytes, box: PrivateKey, device_id: str, approver: str,
                  relay: RelayClient, user_id: str) -> tuple[bytes, bytes]:
    """The archive key and ciphertext hash, once the approver's signature checks out."""
    try:
        opened = SealedBox(box).decrypt(sealed)
    except NaclCryptoError:
        raise LinkError("the history key is not sealed to this device") from None
    if len(opened) != _SEALED:
        raise LinkError("the history key is malformed")
    key, sha256, signature = opened[:32], opened[32:64], opened[64:]
    devices = {d.id: d for d in (await relay.user_devices(user_id)).devices}
    signer = devices.get(approver)
    if signer is None or not ed25519_verify(signer.signature_key,
                                            history_message(device_id, sha256), signature):
        raise LinkError("the history is not signed by a device of this user")
    return key, sha256


# -- the approving device ----------------------------------------------------------------------
def approval(code: str, totp: str) -> rest.LinkApprove:
    """What the user typed, checked before anything is sent."""
    try:
        return rest.LinkApprove(code=code.strip(), totp=totp.strip())
    except ValidationError:
        raise LinkError("a link code is 8 letters or digits (ABCD-EFGH) and a TOTP code "
                        "6 digits") from None


def check_approved(approved: rest.LinkApproved, user_id: str) -> None:
    """The device just linked must be this user's, with the keys it asked to be linked with
    bound together: the history is sealed to its X25519 key."""
    device = approved.device
    if device.user_id != user_id or not ed25519_verify(
            device.signature_key, link_proof_message(device.signature_key, approved.box_key),
            approved.proof):
        raise LinkError("the relay answered with a device that did not ask to be linked here")


async def add_to_rooms(engine: Engine, rooms: list[str], timeout: float) -> None:
    """Invite this user's devices, the new one among them, to ``rooms``, waiting for the new
    device's KeyPackages (published once it sees its approval)."""
    try:
        async with asyncio.timeout(timeout):
            for room_id in rooms:
                while True:
                    try:
                        await engine.invite(room_id, [engine.user_id])
                        break
                    except RelayError as e:
                        if e.code is not Code.NO_KEY_PACKAGE:
                            raise
                        await asyncio.sleep(POLL_SECONDS)
    except TimeoutError:
        raise LinkError("the new device published no KeyPackages in time") from None


async def send_history(relay: RelayClient, store: LocalStore, seed: bytes,
                       approved: rest.LinkApproved, rooms: list[str]) -> rest.LinkHistory:
    """Encrypt the rooms' history to the linked device and leave it the pointer."""
    archive = to_archive(rooms, HistoryStore(store.db).export(rooms))
    encryptor = DocumentEncryptor()
    ciphertext = b"".join(encryptor.encrypt_iter([archive.model_dump_json().encode()]))
    document = encryptor.result()
    device_id = approved.device.id
    blob = await relay.create_blob(None, len(ciphertext), document.ciphertext_sha256,
                                   recipient_device=device_id)
    for offset in range(0, len(ciphertext), blob.chunk_size):
        await relay.put_blob_chunk(blob.blob_id, offset,
                                   ciphertext[offset:offset + blob.chunk_size])
    signature = ed25519_sign(seed, history_message(device_id, document.ciphertext_sha256))
    sealed = SealedBox(PublicKey(approved.box_key)).encrypt(
        document.key + document.ciphertext_sha256 + signature)
    pointer = rest.LinkHistory(device_id=device_id, blob_id=blob.blob_id, sealed_key=sealed)
    await relay.leave_history(pointer)
    return pointer

