"""The client engine of one device: rooms, messages and sync over the relay, end to end encrypted.

The engine joins crypto/ (one MLS group per room), storage/ (the encrypted cache: group states,
messages, outbox) and the relay (REST for accounts and KeyPackages, one WebSocket for frames).
Its rules are those of DESIGN.md "The way a message travels": a message is written to the
outbox with the group state that encrypted it before it is sent; an incoming envelope is
stored with the group state that decrypted it before it is acknowledged; commits are applied
only once the relay has accepted them, so every member walks through the same epochs. The relay
accepts one commit per epoch: a member that loses the race processes the winner's commit, then
builds its own change again on top of it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import secrets
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from app.client import archiving, documents, linking, roles
from app.client.connection import Connection, State, backoff_delay
from app.client.content import (
    APPLICATION_CONTENT,
    ApplicationContent,
    ArchivedContent,
    DocumentContent,
    EditContent,
    RecallContent,
    ReceiptContent,
    ReceiptKind,
    Reference,
    RoomState,
    TextContent,
)
from app.client.events import (
    ConnectionChanged,
    DeviceRevoked,
    Event,
    MessageChanged,
    MessageFailed,
    MessageReceived,
    MessageSent,
    ReceiptReceived,
    RoomChanged,
    RoomRuleBroken,
    TransferProgress,
    UrgentReceived,
)
from app.client.group_commit import GroupCommit
from app.client.maintenance import (
    MaintenancePolicy,
    key_packages_missing,
    refusal_is_final,
    update_due,
)
from app.client.relay_api import RelayClient, RelayError, RelayUnavailable
from crypto import extensions as ext
from crypto import proposals as prop
from crypto.cipher_suite import suite
from crypto.credential import Credential, liaison_identity, organisation_validator
from crypto.errors import MLSError, StaleEpochError
from crypto.framing import PrivateMessage, Sender
from crypto.group import (
    ApplicationMessage,
    CommitApplied,
    Group,
    KeyPackageSecrets,
    PendingCommit,
    ProposalReceived,
)
from crypto.group import create_key_package as new_key_package
from crypto.key_package import KeyPackage
from crypto.message import MLSMessage
from protocol import frames as fr
from protocol import rest
from protocol.encoding import B64, b64decode, b64encode
from protocol.problems import Code, Problem
from record.archive import ArchiveReceipt, Export
from record.config import FhirConfig
from storage.accounts import Account
from storage.attachments import Attachment
from storage.custody import KeyCustody, load_or_create_key
from storage.custody_accounts import AccountPaths
from storage.custody_wipe import WipeReport, wipe_account
from storage.directory import DirectoryEntry
from storage.documents import DocumentCache
from storage.errors import NotSenderError
from storage.groups import GroupRecord
from storage.local_store import LocalStore
from storage.members import Member, RoomRole
from storage.messages import Message, MessageKind, MessageRef, NewMessage, Priority, Version
from storage.outbox import OutboundEnvelope
from storage.pending_commits import PendingCommitRecord, PendingCommitStore
from storage.receipts import Receipt
from storage.room_activity import RoomActivity, RoomActivityStore
from storage.rooms import UNREADABLE_SETTING, PatientContext, Room, RoomKind, RoomOverview
from storage.search import SearchPage
from storage.status import MessageStatus

log = logging.getLogger("liaison.client.engine")

CIPHER_SUITE = suite(0x0003)
KEY_PACKAGES = 20  # one-time KeyPackages published at enrolment
DATABASE = "liaison.db"
ACCOUNT_FILE = "account"  # the custody id of the profile's database key (not a secret)
DOCUMENTS = "documents"  # the profile's document cache: ciphertext named by blob id
COMMIT_ATTEMPTS = 5  # a room that changes this often under us is not worth racing further
CATCH_UP_SECONDS = 30.0  # how long a refused commit waits for the commits it missed
REVOKED_DEVICES = "revoked_devices"  # settings key: device ids the relay's notices named
REOPENED_SETTING = "room_reopened:"  # settings key prefix: the room a room was opened again as
REFUSED_SETTING = "room_refused_from:"  # settings key prefix: users whose commit was refused
ACK_BATCH_SECONDS = 0.02  # deliveries stored in this time are acknowledged together
RECEIPT_BATCH_SECONDS = 0.05  # a burst of messages received in this time costs one receipt
RETENTION_SWEEP_SECONDS = 3600.0  # how often rooms' retention periods are applied while online
SEARCH_INDEX_SECONDS = 2.0  # how often what was stored is indexed for search (one batch)
DIRECTORY_PAGE = 100  # entries per request of a whole-directory sync
# Above this many devices a room sends no delivered receipts (read and acknowledged ones
# still): each would be decrypted and stored by every other member, n² work per message for
# a tick few look at in a ward's room.
DELIVERED_RECEIPT_MAX_DEVICES = 20


class EngineError(Exception):
    """An operation the engine could not carry out; the message says why, for the UI."""


class _KeyPackagePrivate(BaseModel):
    """What storage keeps for a published KeyPackage: enough to join from a Welcome."""

    key_package: B64
    init_priv: B64
    encryption_priv: B64


@dataclass(frozen=True, slots=True)
class _Change:
    """A membership change by device, so that it can be built again on whichever epoch the
    room has reached when the relay refuses it as stale."""

    add: dict[str, KeyPackage] = field(default_factory=dict)  # device id -> claimed KeyPackage
    remove: frozenset[str] = frozenset()  # device ids
    state: Callable[[RoomState], RoomState] | None = None  # the room state's change, if any
    # revoked devices: the relay dropped them already, so they are removed but not declared
    cut_off: frozenset[str] = frozenset()
    # a self-update: commit a fresh path with nothing else to change, as long as the room is
    # still at this epoch (a commit by anyone else gave it fresh secrets already)
    update_from: int | None = None


class _RevocationNotice(BaseModel):
    """The relay's NOTICE that a member device was revoked (relay/service.py ``_cut_off``)."""

    event: Literal["device_revoked"]
    device_id: str
    user_id: str


class _Keep(Enum):
    """``update_room``'s default: leave this part of the room state as it is."""

    KEEP = "keep"


KEEP = _Keep.KEEP


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A frame whose answer someone awaits; ``on_accepted`` runs before any later frame is
    handled, so that a commit is applied before messages of its new epoch arrive."""

    answer: asyncio.Future[fr.Accepted | fr.Refused]
    on_accepted: Callable[[], None] | None


@dataclass(slots=True)
class _Batch:
    """Frames read together, handled in one transaction: one fsync, then one ack. The group
    states they moved are exported once, at the end, and their events wait for the commit."""

    groups: dict[bytes, Group] = field(default_factory=dict)  # moved, saved before committing
    events: list[Event] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)  # stored deliveries, acknowledged after


@dataclass
class _Seal:
    """Content to encrypt for a room and put in the outbox (with ``message``, the cached
    message it carries, if any)."""

    room_id: str
    content: ApplicationContent
    client_id: str
    message: NewMessage | None = None


class Engine:
    """One enrolled device. Build it with ``enroll`` or ``open``; ``start`` goes online."""

    def __init__(self, store: LocalStore, account: Account, document_cache: DocumentCache) -> None:
        self._store = store
        self._account = account
        self._documents = document_cache
        # what send_file accepts, and how transfers ride out lost connections (settable)
        self.max_document_bytes = documents.MAX_DOCUMENT_BYTES
        self.transfer_retry = documents.Retry()
        self._group_commit = GroupCommit(store.db)
        self.delivered_receipt_devices = DELIVERED_RECEIPT_MAX_DEVICES
        self._credential = Credential.deserialize(account.credential)
        self._validator = organisation_validator(account.organisation_key)
        self._relay = RelayClient(account.relay_url)
        self._connection: Connection | None = None
        self._groups: dict[bytes, Group] = {}  # loaded group states, same as stored
        self._answers: dict[str, _Waiting] = {}
        self._subscribers: list[Callable[[Event], None]] = []
        self._committing = asyncio.Lock()  # one commit of ours in flight, whatever the room
        self._epoch_moved = asyncio.Event()  # set, then replaced, whenever a commit is processed
        self._background: set[asyncio.Task[None]] = set()
        self._delivered: dict[str, list[MessageRef]] = {}  # room id -> received, not receipted
        self._inbound: list[fr.Deliver | fr.Accepted] = []  # read, handled by the next _drain
        self._unacked: list[int] = []  # stored deliveries awaiting _acknowledge_stored
        self._batch: _Batch | None = None  # the frames being handled, while they are
        # posted together at the next turn of the event loop (_post)
        self._posting: list[tuple[_Seal, asyncio.Future[None]]] = []
        self._connection_state = State.OFFLINE
        # the otpauth:// URI the relay gave at a user's first enrolment (shown once, not stored)
        self.totp_uri: str | None = None
        self.maintenance = MaintenancePolicy()  # self-update and KeyPackage thresholds (settable)
        self._activity = RoomActivityStore(store.db)
        self._pending_commits = PendingCommitStore(store.db)
        self._resumed: dict[bytes, PendingCommitRecord] = {}  # resent by start, not settled
        self._updating: set[str] = set()  # rooms with a self-update under way
        self._revoked = False
        self._history_pending: linking.PendingHistory | None = None  # see _resume_history

    # -- account ----------------------------------------------------------------------------
    @classmethod
    async def enroll(
        cls,
        profile_dir: Path,
        relay_url: str,
        invite_code: str,
        custody: KeyCustody,
        *,
        device_name: str = "Liaison",
    ) -> Engine:
        """Enrol a new device with an invite code and publish its KeyPackages."""
        _new_profile(profile_dir)
        seed = os.urandom(32)
        async with RelayClient(relay_url) as relay:
            answer = await relay.enroll(invite_code, device_name, seed)
        engine = await cls._enrolled(profile_dir, relay_url, custody, device_name, seed, answer)
        engine.totp_uri = answer.totp_uri
        return engine

    @classmethod
    async def link(
        cls, profile_dir: Path, relay_url: str, custody: KeyCustody, *, device_name: str
    ) -> linking.LinkRequest:
        """Ask to link a new device to a user without an invite: the user approves the
        request's code with ``approve_link`` on a device they have; ``complete()`` then opens
        this profile, and ``receive_history`` brings their rooms' history."""
        _new_profile(profile_dir)
        return await linking.LinkRequest.start(
            relay_url,
            device_name,
            functools.partial(cls._enrolled, profile_dir, relay_url, custody, device_name),
        )

    @classmethod
    async def _enrolled(
        cls,
        profile_dir: Path,
        relay_url: str,
        custody: KeyCustody,
        device_name: str,
        seed: bytes,
        answer: rest.EnrollResponse,
        pending_history: linking.PendingHistory | None = None,
    ) -> Engine:
        """The profile of a device the relay has just created (enrolled or linked), logged in
        and with its KeyPackages published; a linked one keeps what fetching its history
        needs until it has it."""
        key = load_or_create_key(custody, answer.device_id)
        store = LocalStore.open(profile_dir / DATABASE, key, create=True)
        account = Account(
            user_id=answer.user_id,
            device_id=answer.device_id,
            device_name=device_name,
            relay_url=relay_url,
            organisation_name=answer.organisation_name,
            organisation_key=answer.organisation_key,
            credential=answer.credential,
            signature_private_key=seed,
            enrolled_at=time.time(),
        )
        store.account.enrol(account)
        if pending_history is not None:
            pending_history.save(store)
        (profile_dir / ACCOUNT_FILE).write_text(answer.device_id, "utf-8")
        engine = cls(store, account, DocumentCache(profile_dir / DOCUMENTS))
        await engine._login()
        await engine._publish_key_packages()
        return engine

    @classmethod
    def open(cls, profile_dir: Path, custody: KeyCustody) -> Engine:
        """Unlock an enrolled profile: its database key comes from custody."""
        try:
            account_id = (profile_dir / ACCOUNT_FILE).read_text("utf-8").strip()
        except FileNotFoundError:
            raise EngineError(f"no account in {profile_dir}: enrol first") from None
        key = custody.load(account_id)
        if key is None:
            raise EngineError(f"the key of {profile_dir} is not in {custody.description}")
        store = LocalStore.open(profile_dir / DATABASE, key)
        account = store.account.get()
        if account is None:
            store.close()
            raise EngineError(f"{profile_dir} holds no enrolment")
        engine = cls(store, account, DocumentCache(profile_dir / DOCUMENTS))
        engine._history_pending = linking.PendingHistory.load(store)
        return engine

    @property
    def account(self) -> Account:
        """This device's enrolment (relay URL, ids, keys): for the relay calls of a UI or CLI."""
        return self._account

    @property
    def user_id(self) -> str:
        return self._account.user_id

    @property
    def device_id(self) -> str:
        return self._account.device_id

    # -- linking another device of this user -------------------------------------------------
    async def approve_link(
        self, code: str, totp: str, *, timeout: float = linking.LINK_WAIT_SECONDS
    ) -> rest.LinkApproved:
        """Link the device showing ``code`` to this user (``totp`` is the user's TOTP code),
        add it to every room this device is in, and send it those rooms' history."""
        approved = await self._relay.approve_link(linking.approval(code, totp))
        linking.check_approved(approved, self.user_id)
        rooms = [
            r.id
            for r in self.rooms()
            if (group := self._group(r.group_id)) is not None and group.active
        ]
        await linking.add_to_rooms(self, rooms, timeout)
        seed = self._account.signature_private_key
        await linking.send_history(self._relay, self._store, seed, approved, rooms)
        return approved

    async def receive_history(
        self, request: linking.LinkRequest, *, timeout: float = linking.LINK_WAIT_SECONDS
    ) -> int:
        """On the device ``request`` linked, once started: import the history the approving
        device sent (how many messages were new)."""
        return await request.receive_history(self, self._relay, self._store, timeout=timeout)

    async def _publish_key_packages(
        self, count: int = KEY_PACKAGES, *, last_resort: bool = True
    ) -> None:
        """Publish one-time KeyPackages (and a last-resort one), keeping their private halves
        first: a KeyPackage the relay hands out must always be joinable."""
        one_time = [self._new_key_package(last_resort=False) for _ in range(count)]
        resort = self._new_key_package(last_resort=True) if last_resort else None
        await self._relay.upload_key_packages(one_time, resort)

    async def _top_up_key_packages(self) -> None:
        """Publish more one-time KeyPackages when the relay runs low: every Welcome that adds
        this device to a room consumed one. Failing, it waits for the next start or Welcome:
        the last-resort KeyPackage keeps the device joinable meanwhile."""
        try:
            count = await self._relay.key_package_count()
            missing = key_packages_missing(self.maintenance, count.available)
            if missing or not count.last_resort:
                await self._publish_key_packages(missing, last_resort=not count.last_resort)
        except (RelayError, RelayUnavailable) as e:
            log.info("KeyPackages not topped up: %s", e)

    def _new_key_package(self, *, last_resort: bool) -> bytes:
        kp, private = new_key_package(
            CIPHER_SUITE, self._credential, self._account.signature_private_key
        )
        parts = _KeyPackagePrivate(
            key_package=kp.serialize(),
            init_priv=private.init_priv,
            encryption_priv=private.encryption_priv,
        )
        self._store.key_packages.add(
            kp.ref(),
            parts.model_dump_json().encode(),
            created_at=time.time(),
            last_resort=last_resort,
        )
        return MLSMessage(kp).serialize()

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Log in, open the WebSocket, resend whatever the outbox still holds and the commit a
        previous run sent without hearing back, then see to the keys' upkeep. With the relay
        unreachable the engine starts offline: the connection logs in once it is back.
        Started already (a linked device goes online for its history), it does nothing."""
        self._usable()
        if self._connection is not None:
            return
        token: str | None
        try:
            token = await self._login()
        except RelayUnavailable as e:
            log.info("starting offline: %s", e)
            token = None
        except RelayError as e:
            if e.code is Code.DEVICE_REVOKED:
                self._cut_off()
                self._usable()
            raise
        self._connection = Connection(
            _ws_url(self._account.relay_url),
            token,
            on_event=self._on_frame,
            on_state=self._on_state,
            refresh_token=self._login,
        )
        # A previous run's commits may still wait for their fsync (see GroupCommit).
        await asyncio.to_thread(self._store.db.sync)
        for entry in self._store.outbox.due(time.time()):
            await self._connection.send(fr.CLIENT_FRAME.validate_json(entry.envelope.frame))
        for record in self._pending_commits.all():
            self._in_background(self._resume_commit(record))
        self._connection.start()
        self._in_background(self._top_up_key_packages())
        for room in self._store.rooms.all():
            group = self._group(room.group_id)
            if group is not None and group.active:
                self._update_if_due(room.id, self._activity_of(group))
        self._in_background(self._apply_retention())
        self._in_background(self._index_for_search())
        if self._history_pending is not None:
            self._in_background(self._resume_history(self._history_pending))

    async def _resume_history(self, pending: linking.PendingHistory) -> None:
        """A linked device that stopped before it had its history fetches it now; given up
        once the relay has forgotten it (a day after the approval)."""
        try:
            added = await linking.receive_history(self._account.relay_url, pending, self,
                                                  self._relay, self._store,
                                                  timeout=linking.LINK_WAIT_SECONDS)
        except linking.LinkExpired as e:
            log.warning("the history of this linked device is lost: %s", e)
            linking.PendingHistory.done(self._store)
            return
        except (linking.LinkError, RelayError, RelayUnavailable) as e:
            log.warning("the history of this linked device did not arrive, next start: %s", e)
            return
        finally:
            self._history_pending = None
        log.info("history received after a restart: %d messages", added)
        for room in self._store.rooms.all():
            self._emit(RoomChanged(room))

    async def _apply_retention(self) -> None:
        """Erase what rooms' retention periods no longer allow (a discharged patient's room,
        say), at start and then hourly; unsent messages stay whatever their age."""
        while True:
            purged = self._store.messages.purge_expired(time.time())
            if purged:
                log.info("retention erased %d messages", purged)
            await asyncio.sleep(RETENTION_SWEEP_SECONDS)

    async def _index_for_search(self) -> None:
        """Index for search what was stored meanwhile, a batch every few seconds: one FTS5
        segment per batch instead of one per commit (storage/search.py); a search catches up
        by itself first."""
        while True:
            await asyncio.sleep(SEARCH_INDEX_SECONDS)
            self._store.search.index_pending()

    async def stop(self) -> None:
        """Go offline and close the cache; unsent messages and receipts stay in the outbox."""
        self._queue_delivered()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        for waiting in self._answers.values():
            waiting.answer.cancel()
        await self._relay.aclose()
        self._group_commit.close()
        self._store.close()

    async def _login(self) -> str:
        token = await self._relay.login(
            self._account.device_id, self._account.signature_private_key
        )
        return token.token

    @property
    def connection_state(self) -> State:
        """The connection's last state, as the last ConnectionChanged said (offline until
        ``start``)."""
        return self._connection_state

    def _on_state(self, state: State) -> None:
        self._connection_state = state
        self._emit(ConnectionChanged(state))
        if state is State.REVOKED:
            self._cut_off()

    def _cut_off(self) -> None:
        """This device was revoked: no more reconnecting (the connection stops by itself) and
        no more operations."""
        if not self._revoked:
            self._revoked = True
            log.warning("this device was revoked")
            self._emit(DeviceRevoked())

    def _usable(self) -> None:
        if self._revoked:
            raise EngineError("this device was revoked: sign out, then enrol it again")

    # -- devices -----------------------------------------------------------------------------
    async def devices(self) -> list[rest.Device]:
        """This user's devices, revoked ones included."""
        self._online()
        return (await self._relay.my_devices()).devices

    async def revoke_device(self, device_id: str) -> None:
        """Revoke one of this user's devices (this one included): the relay cuts it off, and
        the members of its rooms remove it from them."""
        self._online()
        await self._relay.revoke_device(device_id)

    async def sign_out(self, custody: KeyCustody) -> WipeReport:
        """Go offline and wipe this profile: its key in custody, database and documents.

        A device not revoked yet is revoked first, so that its rooms drop it; an unreachable
        relay does not stop the wipe (revoke the device from another one later)."""
        if not self._revoked and self._connection is not None:
            try:
                await self._relay.revoke_device(self.device_id)
            except (RelayError, RelayUnavailable) as e:
                log.warning("signing out without revoking this device: %s", e)
        root = self._store.db.path.parent
        await self.stop()
        return wipe_account(AccountPaths(self.device_id, root), custody)

    # -- events and queries ------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` with every event from now on; returns the unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _emit(self, event: Event) -> None:
        if self._batch is not None:  # shown once stored
            self._batch.events.append(event)
            return
        for callback in list(self._subscribers):
            callback(event)

    def rooms(self) -> list[Room]:
        return self._store.rooms.all()

    def messages(
        self, room_id: str, limit: int = 50, *, before: MessageRef | None = None
    ) -> list[Message]:
        """The room's last ``limit`` messages, oldest first; ``before`` (the oldest message
        shown) pages back."""
        cursor = None
        if before is not None:
            cursor = self._store.messages.get(before)
            if cursor is None or cursor.room_id != room_id:
                raise EngineError(f"no message {before.client_id} in room {room_id}")
        return self._store.messages.latest(room_id, limit=limit, before=cursor)

    def documents(self, room_id: str, limit: int = 100) -> list[Message]:
        """The room's last ``limit`` shared documents (recalled ones gone), newest first."""
        return self._store.messages.documents(room_id, limit=limit)

    def versions(self, ref: MessageRef) -> list[Version]:
        """The texts an edited message showed before its current one, oldest first."""
        return self._store.messages.versions(ref)

    def room_overview(self) -> list[RoomOverview]:
        """The room list: rooms with urgent messages to acknowledge first, then the most
        recently active, each with its latest message and unread count (one query)."""
        return self._store.rooms.overview(self.user_id)

    def room_state(self, room_id: str) -> RoomState:
        """The room as its members agree on it: roles, archived, patient, retention."""
        room = self._store.rooms.get(room_id)
        group = None if room is None else self._group(room.group_id)
        if group is None:
            raise EngineError(f"unknown room {room_id}")
        return _room_state(group)

    def find_message(self, client_id: str) -> Message:
        """The message a client id names, as listings show it."""
        found = self._store.messages.with_client_id(client_id)
        if len(found) != 1:
            raise EngineError(f"{'no' if not found else 'more than one'} message {client_id}")
        return found[0]

    def search(
        self, query: str, *, room_id: str | None = None, limit: int = 20, offset: int = 0
    ) -> SearchPage:
        """Cached messages matching every word of ``query`` (ignoring case and accents), best
        first; ``offset`` is the previous page's ``next_offset``."""
        rooms = () if room_id is None else (room_id,)
        return self._store.search.search(query, rooms=rooms, limit=limit, offset=offset)

    async def directory(self, query: str, *, limit: int = 20) -> list[DirectoryEntry]:
        """Active colleagues matching ``query``: from the relay, remembered in the cache; from
        the cache alone when the relay cannot be reached."""
        try:
            if self._relay.token is None:
                await self._login()
            page = await self._relay.directory(query, limit=limit)
        except RelayUnavailable as e:
            log.info("directory offline, searching the cache: %s", e)
            return self._store.directory.search(query, limit=limit)
        entries = [_directory_entry(user) for user in page.users]
        with self._store.db.transaction():
            self._store.directory.save(entries)
        return [entry for entry in entries if entry.active]

    def colleagues(self) -> list[DirectoryEntry]:
        """The whole directory as last synced, at once and offline: names for bubbles and
        member lists before the relay answers."""
        return self._store.directory.everyone()

    async def sync_directory(self) -> list[DirectoryEntry]:
        """Fetch the whole directory (a hospital's is a few thousand entries at most) and make
        it the cache: whoever left the relay's directory is forgotten."""
        if self._relay.token is None:
            await self._login()
        entries: list[DirectoryEntry] = []
        cursor: str | None = None
        while True:
            page = await self._relay.directory(limit=DIRECTORY_PAGE, cursor=cursor)
            entries.extend(_directory_entry(user) for user in page.users)
            cursor = page.next_cursor
            if cursor is None:
                break
        self._store.directory.replace_all(entries)
        return entries

    def members(self, room_id: str) -> list[Member]:
        return self._store.members.of_room(room_id)

    def unacknowledged_urgent(self) -> list[Message]:
        """Urgent messages this user has not acknowledged yet, in every room, oldest first."""
        return self._store.messages.unacknowledged_urgent(self.user_id)

    def failure(self, message_ref: MessageRef) -> str | None:
        """Why the relay refused this device's message for good (a problem code), or None:
        such a message is never resent (``MessageFailed`` said so when it happened)."""
        message_id = self._store.messages.id_of(message_ref)
        return None if message_id is None else self._store.outbox.failure(message_id)

    def unsent(self) -> int:
        """Frames (messages, receipts) the relay has not accepted yet: a short-lived client
        waits for none before going offline."""
        return len(self._store.outbox)

    # -- rooms -------------------------------------------------------------------------------
    async def create_room(
        self,
        kind: RoomKind,
        name: str,
        member_user_ids: list[str],
        *,
        patient: PatientContext | None = None,
        retention_days: int | None = None,
    ) -> str:
        """A new room with every device of these users (and this user's other devices), each
        checked against the organisation's attestation first; this user owns it."""
        if kind is RoomKind.DIRECT and len(set(member_user_ids) - {self.user_id}) != 1:
            raise EngineError("a direct room is between this user and exactly one other")
        state = _state(
            kind=kind,
            name=name,
            roles={self.user_id: RoomRole.OWNER},
            patient=patient,
            retention_days=retention_days,
        )
        return await self._open_room(state, member_user_ids)

    async def recreate_room(self, room_id: str) -> str:
        """Open a room this device can no longer read (see ``unreadable``) again, as a new
        room: its kind, name, patient, retention, members and their roles as this device last
        agreed on them, this user an owner, but none of the users whose commits it refused
        there (an owner may invite them again). The remedy when the owners' own devices refused
        a commit the relay took: then no one is left to remove and invite again in place.
        Owners and moderators only; the old room stays, unreadable, with its history, until
        the user leaves it, and leads to the new one on every member's device (see
        ``replacement``)."""
        group = self._member_group(room_id)
        if not self.unreadable(room_id):
            raise EngineError("this device reads the room: it needs no new room")
        self._check(roles.check_manage, group)
        state = _room_state(group)
        if state.archived:
            raise EngineError("the room is archived: it is read-only, not to be opened again")
        reopened = self.replacement(room_id)
        if reopened is not None:
            return reopened.id  # a second tap, another window, or another owner was first
        refused = self._refused_from(room_id)
        members = [u for u in dict.fromkeys(m.user_id for m in self.members(room_id))
                   if u != self.user_id and u not in refused]
        if state.kind is RoomKind.DIRECT and not members:
            raise EngineError("the other person's change was refused: start a new direct room "
                              "with them only if you trust their device")
        kept = {u: r for u, r in state.roles.items() if u in members}
        state = state.model_copy(update={"roles": {**kept, self.user_id: RoomRole.OWNER},
                                         "replaces": room_id})
        new_id = await self._open_room(state, members)
        with self._store.db.transaction():
            self._store.settings.set(REOPENED_SETTING + room_id, new_id)
        return new_id

    def replacement(self, room_id: str) -> Room | None:
        """The room that an owner or moderator opened again for this one while this device
        cannot read it (see ``recreate_room``), if this device is in it. Invited back into the
        old room, the device reads and writes there again."""
        new_id = self._store.settings.get(REOPENED_SETTING + room_id)
        if not isinstance(new_id, str) or not self.unreadable(room_id):
            return None
        return self._store.rooms.get(new_id)

    def _check_not_replaced(self, room_id: str) -> None:
        """No new message in a room opened again elsewhere: the others read on there, and one
        written here would go unseen. Receipts, acknowledgements, edits and recalls still go."""
        replacement = self.replacement(room_id)
        if replacement is not None:
            raise EngineError(f"the room was opened again as {replacement.name!r} "
                              f"({replacement.id}): write there")

    def _note_replacement(self, group: Group, room: Room) -> Room | None:
        """A room joined that replaces one this device cannot read either: the old room then
        leads to it. Only when its creator (leaf 0, who opened it) manages the old room as this
        device last agreed on it, and had no commit refused there: no member may redirect a
        room it does not manage, nor the offender a room it broke."""
        replaced = _room_state(group).replaces
        old = None if replaced is None else self._store.rooms.get(replaced)
        if old is None or not self.unreadable(old.id):
            return None
        old_group = self._group(old.group_id)
        creator = next((_user(c) for leaf, c in group.members() if leaf == 0), None)
        if (old_group is None or creator is None or creator in self._refused_from(old.id)
                or not roles.manages(_room_state(old_group), creator)):
            log.warning("room %s claims to replace room %s: not taken", room.id, old.id)
            return None
        self._store.settings.set(REOPENED_SETTING + old.id, room.id)
        return old

    def _refused_from(self, room_id: str) -> set[str]:
        """The users whose commits this device refused in the room."""
        stored = self._store.settings.get(REFUSED_SETTING + room_id)
        return {str(u) for u in stored} if isinstance(stored, list) else set()

    async def _open_room(self, state: RoomState, member_user_ids: list[str]) -> str:
        connection = self._online()
        device_ids: list[str] = []
        for user_id in dict.fromkeys([*member_user_ids, self.user_id]):
            listed = await self._relay.user_devices(user_id)
            device_ids += [d.id for d in listed.devices if not d.revoked and d.id != self.device_id]
        claimed = (
            (await self._relay.claim_key_packages(device_ids)).key_packages if device_ids else []
        )
        add = self._attested(claimed)
        group_id = os.urandom(32)
        group = Group.create(
            CIPHER_SUITE,
            group_id,
            self._credential,
            self._account.signature_private_key,
            self._validator,
            extensions=[ext.Extension(ext.LIAISON_ROOM_STATE, state.model_dump_json().encode())],
        )
        await self._relay.create_group(group_id)
        if add:
            try:
                pending = group.commit(add=list(add.values()))
            except MLSError as e:
                raise EngineError(f"a member's device cannot be added: {e}") from None
            frame = fr.Commit(
                id=_client_id(),
                group_id=group_id,
                epoch=group.epoch,
                payload=pending.message,
                welcome=pending.welcome,
                add_devices=list(add),
            )
            answer = await self._request(connection, frame, lambda: group.apply(pending))
            if isinstance(answer, fr.Refused):
                raise EngineError(f"the relay refused the new room: {answer.problem.code.value}")
        room = self._room_from(group, created_at=time.time())
        with self._store.db.transaction():
            self._save_group(group)
            self._store.rooms.save(room)
            self._store.members.replace(room.id, self._members_of(group, room))
        self._emit(RoomChanged(room))
        return room.id

    async def invite(self, room_id: str, user_ids: list[str]) -> None:
        """Add every device of these users that is not in the room yet: owners and moderators
        only, but any member may add its own user's new devices."""
        group = self._member_group(room_id)
        if set(user_ids) - {self.user_id}:
            self._check(roles.check_manage, group)
        present = _devices(group)
        device_ids = []
        for user_id in dict.fromkeys(user_ids):
            listed = await self._relay.user_devices(user_id)
            device_ids += [d.id for d in listed.devices if not d.revoked and d.id not in present]
        if not device_ids:
            return
        claimed = (await self._relay.claim_key_packages(device_ids)).key_packages
        await self._commit(room_id, _Change(add=self._attested(claimed)))

    async def remove(self, room_id: str, user_id: str) -> None:
        """Remove every device of ``user_id``; to remove oneself, ``leave``."""
        if user_id == self.user_id:
            raise EngineError("a member cannot remove itself: leave the room instead")
        group = self._member_group(room_id)
        self._check(roles.check_manage, group)
        devices = frozenset(device for device, user in _devices(group).items() if user == user_id)
        if not devices:
            raise EngineError(f"{user_id} is not in the room")
        # the role goes too, or a user invited back later would find it again
        forget = functools.partial(_with_role, user_id=user_id, role=RoomRole.MEMBER)
        await self._commit(room_id, _Change(remove=devices, state=forget))

    async def update_room(
        self,
        room_id: str,
        *,
        name: str | _Keep = KEEP,
        retention_days: int | _Keep | None = KEEP,
        patient: PatientContext | _Keep | None = KEEP,
        archived: bool | _Keep = KEEP,
    ) -> None:
        """Change the room's state for every member (a commit): rename it, set its retention
        (None: kept until left), link it to a patient, archive it (read-only for all).
        Owners and moderators only."""
        changes = {
            key: value
            for key, value in (
                ("name", name),
                ("retention_days", retention_days),
                ("patient", patient),
                ("archived", archived),
            )
            if value is not KEEP
        }
        group = self._member_group(room_id)
        self._check(roles.check_manage, group)
        _state(**{**_room_state(group).model_dump(), **changes})  # refuse bad input up front
        await self._commit(
            room_id, _Change(state=lambda s: _state(**{**s.model_dump(), **changes}))
        )

    async def set_role(self, room_id: str, user_id: str, role: RoomRole) -> None:
        """Give a member of the room a role (owners and moderators only; only owners make or
        unmake owners)."""
        group = self._member_group(room_id)
        if user_id not in set(_devices(group).values()):
            raise EngineError(f"{user_id} is not in the room")
        self._check(roles.check_manage, group)
        await self._commit(
            room_id, _Change(state=functools.partial(_with_role, user_id=user_id, role=role))
        )

    async def leave(self, room_id: str) -> None:
        """Ask the others to remove this user's devices, then forget the room.

        A member cannot commit its own removal (RFC 9420 §12.2), so it proposes it: the first
        member online commits the proposal (see ``_receive_proposal``).
        """
        connection = self._online()
        room = self._store.rooms.get(room_id)
        group = self._member_group(room_id)
        assert room is not None  # _member_group found it
        mine = [leaf for leaf, c in group.members() if _user(c) == self.user_id]
        for leaf in mine:
            frame = fr.Send(
                id=_client_id(),
                group_id=group.group_id,
                kind=fr.Kind.PROPOSAL,
                payload=group.propose_remove(leaf),
            )
            answer = await self._request(connection, frame)
            if isinstance(answer, fr.Refused):
                raise EngineError(f"the relay refused to leave: {answer.problem.code.value}")
        with self._store.db.transaction():
            self._store.rooms.delete(room_id)
            self._store.groups.delete(group.group_id)
            self._activity.forget(room_id)
            self._store.settings.delete(UNREADABLE_SETTING + room_id)
            self._store.settings.delete(REOPENED_SETTING + room_id)
            self._store.settings.delete(REFUSED_SETTING + room_id)
        self._groups.pop(group.group_id, None)
        self._emit(RoomChanged(room, active=False))

    async def _commit(self, room_id: str, change: _Change) -> None:
        """Commit ``change``; refused as stale, catch up with the room and build it again."""
        connection = self._online()
        async with self._committing:
            for _ in range(COMMIT_ATTEMPTS):
                group = self._member_group(room_id)
                try:
                    built = _build(group, change)
                    if built is None:
                        return  # someone else made the change already
                    pending, added, removed = built
                    _check_commit(group, pending.next_group, self.user_id, self._revoked_devices())
                except roles.RuleBroken as e:
                    raise EngineError(str(e)) from None
                except MLSError as e:
                    raise EngineError(f"the change cannot be made: {e}") from None
                frame = fr.Commit(
                    id=_client_id(),
                    group_id=group.group_id,
                    epoch=group.epoch,
                    payload=pending.message,
                    welcome=pending.welcome,
                    add_devices=added,
                    remove_devices=removed,
                )
                self._pending_commits.save(
                    PendingCommitRecord(
                        group.group_id,
                        group.epoch,
                        frame.model_dump_json(exclude_none=True).encode(),
                        pending.next_group.export_state(),
                    )
                )
                answer = await self._request(
                    connection, frame, lambda g=group, p=pending: self._own_commit(g, p)
                )
                if isinstance(answer, fr.Accepted):
                    return
                self._pending_commits.delete(group.group_id)
                if answer.problem.code is not Code.STALE_EPOCH or answer.problem.epoch is None:
                    raise EngineError(f"the relay refused the change: {answer.problem.code.value}")
                await self._caught_up(group.group_id, answer.problem.epoch)
        raise EngineError("the room kept changing: try again")

    def _own_commit(self, group: Group, pending: PendingCommit) -> None:
        current = self._group(group.group_id)
        if current is None or current.epoch != group.epoch:
            return  # settled meanwhile: the stored next state was adopted
        current.apply(pending)
        self._took_commit(current, own=True)

    async def _resume_commit(self, record: PendingCommitRecord) -> None:
        """Send again, with the same client id, a commit a previous run sent without hearing
        back. The relay answers a commit it stored with ``accepted``; it forgets client ids
        once every recipient has the commit and the relay restarted, and then answers
        ``stale_epoch``, so that answer settles nothing: the envelopes that follow do (see
        ``_settle``)."""
        group = self._group(record.group_id)
        if group is None or group.epoch != record.epoch:
            self._pending_commits.delete(record.group_id)  # settled before the crash
            return
        self._resumed[record.group_id] = record
        frame = fr.Commit.model_validate_json(record.frame)
        async with self._committing:
            answer = await self._request(self._online(), frame, lambda: self._adopt(record))
        if isinstance(answer, fr.Accepted):
            return
        if answer.problem.code is Code.STALE_EPOCH:
            log.info("room %s: the relay forgot a resent commit", _room_id(record.group_id))
            return  # the envelopes that follow settle it
        self._resumed.pop(record.group_id, None)
        self._pending_commits.delete(record.group_id)
        log.warning("the relay refused a resent commit: %s", answer.problem.code.value)

    def _adopt(self, record: PendingCommitRecord) -> None:
        """The relay took this device's commit: the room moves to the state stored with it."""
        self._resumed.pop(record.group_id, None)
        group = self._group(record.group_id)
        if group is not None and group.epoch == record.epoch:
            self._took_commit(Group.import_state(record.next_state, self._validator), own=True)

    def _settle(self, envelope: fr.Envelope) -> None:
        """Decide a resent commit from what the relay delivers, in order: another member's
        commit for the same epoch means ours lost; anything of a later epoch means ours won
        (the relay delivers every commit but one's own)."""
        record = self._resumed.get(envelope.group_id)
        if record is None:
            return
        if envelope.kind is fr.Kind.COMMIT:
            epoch = envelope.epoch
        elif envelope.kind is fr.Kind.APPLICATION:
            epoch = _private_epoch(envelope.payload)
        else:
            return  # a Welcome, a notice, a proposal: no epoch to judge by
        if epoch is None or epoch < record.epoch:
            return
        if envelope.kind is fr.Kind.COMMIT and epoch == record.epoch:
            del self._resumed[envelope.group_id]  # processing it deletes the stored one
        elif epoch > record.epoch:
            self._adopt(record)

    async def _self_update(self, room_id: str, epoch: int) -> None:
        try:
            await self._commit(room_id, _Change(update_from=epoch))
        finally:
            self._updating.discard(room_id)

    def _activity_of(self, group: Group) -> RoomActivity:
        room_id = _room_id(group.group_id)
        return RoomActivity(group.application_messages,
                            self._activity.renewed_at(room_id, now=time.time()))

    def _update_if_due(self, room_id: str, activity: RoomActivity) -> None:
        """Start a self-update of the room when app/client/maintenance.py says it is due."""
        if (
            room_id in self._updating
            or self._connection is None
            or not update_due(self.maintenance, activity, time.time())
        ):
            return
        room = self._store.rooms.get(room_id)
        group = None if room is None else self._group(room.group_id)
        if group is not None and group.active:
            self._updating.add(room_id)
            self._in_background(self._self_update(room_id, group.epoch))

    def _check(self, rule: Callable[[RoomState, str], None], group: Group) -> None:
        """Apply one of app/client/roles.py's rules to this user, for a clear refusal."""
        try:
            rule(_room_state(group), self.user_id)
        except roles.RuleBroken as e:
            raise EngineError(str(e)) from None

    def _attested(self, claimed: list[rest.ClaimedKeyPackage]) -> dict[str, KeyPackage]:
        """The claimed KeyPackages by device, each checked against the organisation's
        attestation and the device it was claimed for, before anything is committed."""
        out = {}
        for c in claimed:
            key_package = _key_package(c.key_package)
            leaf = key_package.leaf_node
            try:
                self._validator(leaf.credential, leaf.signature_key)
                device = liaison_identity(leaf.credential).device_id.decode()
            except MLSError as e:
                raise EngineError(f"device {c.device_id} of {c.user_id} is refused: {e}") from None
            if device != c.device_id:
                raise EngineError(f"the relay handed out another device's KeyPackage for {device}")
            out[device] = key_package
        return out

    def _rule_broken(self, room: Room, user_id: str, reason: str) -> None:
        log.warning("room %s: not taking what %s sent: %s", room.id, user_id, reason)
        self._emit(RoomRuleBroken(room, user_id, reason))

    async def _caught_up(self, group_id: bytes, epoch: int) -> None:
        """Wait until the commits up to ``epoch``, which arrive on the WebSocket, are processed
        (or this device was removed meanwhile, which ``_commit`` then reports)."""

        def behind() -> bool:
            group = self._group(group_id)
            return group is not None and group.active and group.epoch < epoch

        try:
            async with asyncio.timeout(CATCH_UP_SECONDS):
                while behind():
                    await self._epoch_moved.wait()
        except TimeoutError:
            raise EngineError("the room's latest changes did not arrive: try again") from None

    def _member_group(self, room_id: str) -> Group:
        """The group a room id names (its group id, encoded): loaded, it costs no read."""
        self._usable()
        group_id = _group_id(room_id)
        group = None if group_id is None else self._group(group_id)
        if group is None:
            raise EngineError(f"unknown room {room_id}")
        if not group.active:
            raise EngineError("this device is no longer a member of the room")
        return group

    async def _request(
        self,
        connection: Connection,
        frame: fr.Send | fr.Commit,
        on_accepted: Callable[[], None] | None = None,
    ) -> fr.Accepted | fr.Refused:
        """Send a frame whose answer decides what happens next, and wait for it."""
        answer = asyncio.get_running_loop().create_future()
        self._answers[frame.id] = _Waiting(answer, on_accepted)
        try:
            await connection.send(frame)
            return await answer
        finally:
            del self._answers[frame.id]

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run work that must not hold up the frames (it awaits answers among them)."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background work failed: %r", task.exception())

    def _online(self) -> Connection:
        self._usable()
        if self._connection is None:
            raise EngineError("the engine is not started")
        return self._connection

    def _room_from(self, group: Group, *, created_at: float) -> Room:
        state = _room_state(group)
        return Room(
            id=_room_id(group.group_id),
            group_id=group.group_id,
            kind=state.kind,
            name=state.name,
            created_at=created_at,
            patient=state.patient,
            retention_days=state.retention_days,
        )

    def _members_of(self, group: Group, room: Room) -> list[Member]:
        roles = _room_state(group).roles
        users = set(_devices(group).values())
        return [
            Member(
                room_id=room.id,
                user_id=u,
                role=roles.get(u, RoomRole.MEMBER),
                joined_at=room.created_at,
            )
            for u in sorted(users)
        ]

    # -- groups in storage -------------------------------------------------------------------
    def _group(self, group_id: bytes) -> Group | None:
        group = self._groups.get(group_id)
        if group is None:
            record = self._store.groups.load(group_id)
            if record is None:
                return None
            group = self._groups[group_id] = Group.import_state(record.state, self._validator)
        return group

    def _save_group(self, group: Group) -> None:
        """Persist ``group`` (inside the caller's transaction, or at the end of the batch of
        frames being handled) and keep it loaded."""
        if self._batch is not None:
            self._batch.groups[group.group_id] = group
        else:
            self._store.groups.save(GroupRecord(group.group_id, group.epoch, group.export_state()))
        self._groups[group.group_id] = group

    def _took_commit(
        self, group: Group, *, sent_at: float | None = None, own: bool = False
    ) -> None:
        """Persist a group that moved to a new epoch (or out of which we were removed) with
        its room and members, and tell the UI and whoever waits for the room to move."""
        room = self._store.rooms.by_group(group.group_id)
        created_at = room.created_at if room is not None else sent_at or time.time()
        room = self._room_from(group, created_at=created_at)
        with self._store.db.transaction():
            self._save_group(group)
            self._pending_commits.delete(group.group_id)  # whoever's, the epoch is settled
            if own:
                self._activity.renewed(room.id, at=time.time())
            self._store.rooms.save(room)
            self._store.members.replace(room.id, self._members_of(group, room))
        self._epoch_moved.set()
        self._epoch_moved = asyncio.Event()
        self._emit(RoomChanged(room, active=group.active))

    # -- sending -----------------------------------------------------------------------------
    async def send_text(
        self, room_id: str, body: str, *, urgent: bool = False, reply_to: MessageRef | None = None
    ) -> MessageRef:
        """Encrypt, store with its outbox row, then send; the message shows as pending until
        the relay accepts it, and is resent by every ``start`` until then."""
        self._check_not_replaced(room_id)
        content = TextContent(
            body=body,
            urgent=urgent,
            reply_to=None if reply_to is None else _reference(reply_to),
        )
        ref = MessageRef(self.device_id, _client_id())
        message = NewMessage(
            ref=ref,
            room_id=room_id,
            sender_user=self.user_id,
            body=body,
            local_ts=time.time(),
            priority=Priority.URGENT if urgent else Priority.NORMAL,
            reply_to=reply_to,
        )
        await self._post(_Seal(room_id, content, ref.client_id, message))
        return ref

    async def edit(self, ref: MessageRef, body: str) -> None:
        """Give one of this user's messages a new text, for every member; the old one stays in
        the message's history (``versions``)."""
        if not body.strip():
            raise EngineError("an edit needs a text: recall the message to take it back")
        await self._change(ref, EditContent(target=_reference(ref), body=body))

    async def recall(self, ref: MessageRef) -> None:
        """Erase one of this user's messages on every member's device, leaving a tombstone."""
        await self._change(ref, RecallContent(target=_reference(ref)))

    async def _change(self, ref: MessageRef, content: EditContent | RecallContent) -> None:
        message = self._store.messages.get(ref)
        if message is None:
            raise EngineError(f"unknown message {ref.client_id}")
        if message.sender_user != self.user_id:
            raise EngineError("only its sender may edit or recall a message")
        if message.recalled_at is not None:
            raise EngineError("this message was recalled")
        change_ref = MessageRef(self.device_id, _client_id())
        with self._store.db.transaction():  # changed here only if the change is on its way
            self._change_message(ref, content, self.user_id, change_ref, time.time())
            frame = self._seal(_Seal(message.room_id, content, change_ref.client_id))
        self._message_changed(message.room_id, ref)
        await self._send(frame)

    def _change_message(
        self,
        target: MessageRef,
        content: EditContent | RecallContent,
        user_id: str,
        change_ref: MessageRef,
        at: float,
    ) -> bool:
        """Apply an edit or recall by ``user_id`` in storage; False if it changed nothing."""
        if isinstance(content, EditContent):
            return self._store.messages.edit(
                target, edit=change_ref, editor_user=user_id, body=content.body, at=at
            )
        return self._store.messages.recall(target, recaller_user=user_id, at=at)

    def _message_changed(self, room_id: str, ref: MessageRef) -> None:
        room, message = self._store.rooms.get(room_id), self._store.messages.get(ref)
        if room is not None and message is not None:
            self._emit(MessageChanged(room, message))

    async def mark_read(self, room_id: str, upto_message: MessageRef) -> None:
        """Mark the room's messages from others up to ``upto_message`` as read, and tell their
        senders with one receipt."""
        upto = self._store.messages.get(upto_message)
        if upto is None or upto.room_id != room_id:
            raise EngineError(f"no message {upto_message.client_id} in room {room_id}")
        with self._store.db.transaction():  # read here only if the receipt is on its way
            read = self._store.messages.mark_read(room_id, upto, reader_user=self.user_id)
            if not read:
                return
            frame = self._queue_receipt(room_id, "read", read)
        await self._send(frame)

    async def acknowledge(self, message_ref: MessageRef) -> None:
        """Confirm an urgent message to its sender: more than having read it, and only urgent
        messages ask for it."""
        message = self._store.messages.get(message_ref)
        if message is None:
            raise EngineError(f"unknown message {message_ref.client_id}")
        if message.sender_user == self.user_id:
            raise EngineError("one's own message needs no acknowledgement")
        if message.priority is not Priority.URGENT:
            raise EngineError("only urgent messages are acknowledged; this one is not urgent")
        with self._store.db.transaction():  # acknowledged only if the receipt is on its way
            if not self._store.messages.advance_status(message_ref, MessageStatus.ACKNOWLEDGED):
                return  # acknowledged already
            frame = self._queue_receipt(message.room_id, "acknowledged", [message_ref])
        await self._send(frame)

    def _queue_receipt(self, room_id: str, kind: ReceiptKind, refs: list[MessageRef]) -> fr.Send:
        """A receipt, encrypted and in the outbox: resent until accepted, never cached as a
        message."""
        return self._seal(_Seal(room_id, _receipt(kind, refs), _client_id()))

    def _queue_delivered(self) -> list[fr.Send]:
        """One delivered receipt per room for what was received since the last one; a room
        left meanwhile gets none."""
        pending, self._delivered = self._delivered, {}
        seals = [_Seal(room_id, _receipt("delivered", refs), _client_id())
                 for room_id, refs in pending.items()]
        frames = []
        for seal, sealed in zip(seals, self._seal_all(seals), strict=True):
            if isinstance(sealed, fr.Send):
                frames.append(sealed)
            else:
                log.info("no delivered receipt for room %s: %s", seal.room_id, sealed)
        return frames

    async def _send_delivered(self) -> None:
        await asyncio.sleep(RECEIPT_BATCH_SECONDS)
        await self._send(*self._queue_delivered())

    def _seal(self, seal: _Seal) -> fr.Send:
        """Seal one message now, inside the caller's transaction if there is one."""
        (sealed,) = self._seal_all([seal])
        if isinstance(sealed, Exception):
            raise sealed
        return sealed

    async def _post(self, seal: _Seal) -> None:
        """Seal and send with whatever else is posted in this turn of the event loop: a
        burst's messages share one transaction, one write of each room's group state, one
        wait for the fsync and one write to the socket, which cost more than encrypting them.
        Returns once the message is on its way (stored and sent, or stored to send later)."""
        loop = asyncio.get_running_loop()
        if not self._posting:
            loop.call_soon(self._post_queued)
        posted: asyncio.Future[None] = loop.create_future()
        self._posting.append((seal, posted))
        await posted

    def _post_queued(self) -> None:
        queued, self._posting = self._posting, []
        try:
            results: list[fr.Send | BaseException] = list(
                self._seal_all([seal for seal, _ in queued]))
        except BaseException as e:  # nothing stored: every one of them failed
            results = [e] * len(queued)
        sealed = []
        for (_, posted), result in zip(queued, results, strict=True):
            if isinstance(result, fr.Send):
                sealed.append(posted)
            elif not posted.cancelled():
                posted.set_exception(result)
        frames = [r for r in results if isinstance(r, fr.Send)]
        if frames:
            self._in_background(self._send_posted(frames, sealed))

    async def _send_posted(self, frames: list[fr.Send], posted: list[asyncio.Future[None]]) -> None:
        """Stopping the engine cancels this: the frames stay stored, and ``start`` sends them."""
        failure: Exception | None = None
        try:
            await self._send(*frames)
        except Exception as e:  # the disk refused the fsync: nothing went
            failure = e
            raise
        finally:
            for waiting in posted:
                if waiting.done():
                    continue
                if failure is None:
                    waiting.set_result(None)
                else:
                    waiting.set_exception(failure)

    def _seal_all(self, seals: list[_Seal]) -> list[fr.Send | Exception]:
        """Encrypt each content, then store every frame in the outbox, with the group states
        that encrypted them, in one transaction, before any goes anywhere. Whatever is not a
        receipt is a post, which the room's rules may refuse: a refused or unencryptable
        one fails alone (its error in its place), a failed transaction fails them all."""
        results: list[fr.Send | Exception] = []
        groups: dict[bytes, Group] = {}
        for seal in seals:
            try:
                group = self._member_group(seal.room_id)
                if not isinstance(seal.content, ReceiptContent):
                    self._check(roles.check_send, group)
                payload = group.encrypt(seal.content.model_dump_json().encode())
            except (EngineError, MLSError) as e:
                results.append(e)
                continue
            groups[group.group_id] = group
            results.append(fr.Send(id=seal.client_id, group_id=group.group_id, payload=payload))
        if not groups:
            return results
        try:  # durable before it is sent: see _send
            with self._store.db.transaction(durable=False):
                for group in groups.values():
                    self._save_group(group)
                for seal, frame in zip(seals, results, strict=True):
                    if isinstance(frame, fr.Send):
                        self._enqueue(frame, seal.message)
        except BaseException:
            for group_id in groups:
                self._groups.pop(group_id, None)  # the stored state is the truth
            raise
        for group in groups.values():
            self._update_if_due(_room_id(group.group_id), self._activity_of(group))
        return results

    def _enqueue(self, frame: fr.Send, message: NewMessage | None) -> None:
        envelope = OutboundEnvelope(
            client_id=frame.id,
            group_id=frame.group_id,
            frame=frame.model_dump_json(exclude_none=True).encode(),
        )
        if message is None:
            self._store.outbox.enqueue(envelope, now=time.time())
        else:
            self._store.messages.add_outgoing(message, envelope)

    async def _send(self, *frames: fr.Send) -> None:
        """Send frames already in the outbox, once durable; offline, ``start`` sends them."""
        connection = self._connection  # closed meanwhile, it drops them: start resends
        if connection is not None:
            await self._group_commit.durable()
            await connection.send(*frames)

    # -- documents ---------------------------------------------------------------------------
    async def send_file(
        self,
        room_id: str,
        path: Path,
        *,
        caption: str | None = None,
        on_progress: documents.Progress | None = None,
    ) -> MessageRef:
        """Share a file: checked (type from its content, size), encrypted into the profile's
        staging area, uploaded (resuming after lost connections), then announced by a document
        message that shows as pending until the relay accepts it, like ``send_text``.

        Raises DocumentError (nothing sent) if the file may not be shared or the upload fails.
        """
        self._online()
        group = self._member_group(room_id)
        self._check(roles.check_send, group)  # before uploading, not only when sealing
        self._check_not_replaced(room_id)
        ref = MessageRef(self.device_id, _client_id())
        content = await documents.upload_file(
            self._relay,
            self._documents,
            group.group_id,
            path,
            caption=caption,
            max_bytes=self.max_document_bytes,
            on_progress=self._progress(room_id, ref, "upload", on_progress),
            retry=self.transfer_retry,
        )
        message = self._document_message(content, ref, room_id, self.user_id, None)
        await self._post(_Seal(room_id, content, ref.client_id, message))
        return ref

    async def fetch_file(
        self, message_ref: MessageRef, *, on_progress: documents.Progress | None = None
    ) -> None:
        """Download a message's document into the encrypted cache, checking it against the
        hash the message carries; a document cached already is not downloaded again."""
        message, item = self._attachment(message_ref)
        if item.blob_id in self._documents:
            return
        self._online()
        await documents.download(
            self._relay,
            self._documents,
            item.blob_id,
            item.key.ciphertext_sha256,
            on_progress=self._progress(message.room_id, message_ref, "download", on_progress),
            retry=self.transfer_retry,
        )

    async def export_file(self, message_ref: MessageRef, destination: Path) -> int:
        """Decrypt a fetched document to ``destination``, the user's explicit choice (the only
        way a document's plaintext reaches the disk); its size."""
        _, item = self._attachment(message_ref)
        return await asyncio.to_thread(documents.export, self._documents, item, destination)

    # -- archiving to the record -------------------------------------------------------------
    async def archive_to_record(
        self, room_id: str, message_refs: list[MessageRef], fhir: FhirConfig
    ) -> ArchiveReceipt:
        """Export messages of a patient room, with their documents, to the patient's record as
        one FHIR transaction (the author: this user, by RPPS when the directory knows it);
        then tell the room, encrypted, what was archived. A retry is stored once."""
        group = self._member_group(room_id)
        self._check(roles.check_send, group)  # the room must take the note: checked up front
        patient = _room_state(group).patient
        if patient is None:
            raise EngineError("only a room linked to a patient is archived to the record")
        chosen = []
        for ref in dict.fromkeys(message_refs):
            message = self._store.messages.get(ref)
            if message is None or message.room_id != room_id or message.recalled_at is not None:
                raise EngineError(f"no message {ref.client_id} to archive in room {room_id}")
            data = None
            if message.attachments:
                await self.fetch_file(ref)
                data = await asyncio.to_thread(
                    documents.read, self._documents, message.attachments[0])
            sender = self._store.directory.get(message.sender_user)
            chosen.append(archiving.archived(
                message, sender.display_name if sender else message.sender_user, data))
        if not chosen:
            raise EngineError("choose the messages to archive")
        room = self._store.rooms.get(room_id)
        export = Export(
            room_id=room_id, room_name=room.name if room else room_id, patient=patient,
            author=archiving.author(self._store.directory.get(self.user_id), self.user_id),
            at=datetime.now(UTC), messages=tuple(chosen))
        stored = await archiving.send_to_record(fhir, export)
        content = archiving.announcement(
            stored, list(dict.fromkeys(message_refs)), sum(m.document is not None for m in chosen))
        ref = MessageRef(self.device_id, _client_id())
        note = archiving.note(content, ref, room_id, self.user_id, None, time.time())
        await self._post(_Seal(room_id, content, ref.client_id, note))
        return stored

    def _attachment(self, message_ref: MessageRef) -> tuple[Message, Attachment]:
        message = self._store.messages.get(message_ref)
        if message is None or not message.attachments:
            raise EngineError(f"no document in message {message_ref.client_id}")
        return message, message.attachments[0]

    def _progress(
        self,
        room_id: str,
        ref: MessageRef,
        direction: Literal["upload", "download"],
        on_progress: documents.Progress | None,
    ) -> documents.Progress:
        """The caller's progress callback, and a TransferProgress event for subscribers."""
        room = self._store.rooms.get(room_id)

        def report(done: int, total: int) -> None:
            if on_progress is not None:
                on_progress(done, total)
            if room is not None:
                self._emit(TransferProgress(room, ref, direction, done, total))

        return report

    @staticmethod
    def _document_message(
        content: DocumentContent,
        ref: MessageRef,
        room_id: str,
        sender_user: str,
        server_ts: float | None,
    ) -> NewMessage:
        """The cached message sharing a document: its caption as body, its key in the
        attachment row (the document itself is fetched only when asked for)."""
        return NewMessage(
            ref=ref,
            room_id=room_id,
            sender_user=sender_user,
            body=content.caption,
            local_ts=time.time(),
            server_ts=server_ts,
            kind=MessageKind.DOCUMENT,
            attachments=(documents.attachment(content),),
        )

    # -- receiving ---------------------------------------------------------------------------
    async def _on_frame(self, frame: fr.Accepted | fr.Refused | fr.Deliver | fr.Revoked) -> None:
        """Deliveries and plain acceptances queue up while more frames are at hand, and are
        handled together as soon as the connection waits; any other frame first has them
        handled, so that an own commit is applied in order with what the relay delivered."""
        if isinstance(frame, fr.Deliver) or (
            isinstance(frame, fr.Accepted) and frame.id not in self._answers
        ):
            if not self._inbound:
                self._in_background(self._drain())
            self._inbound.append(frame)
            return
        await self._drain()
        match frame:
            case fr.Accepted(id=client_id) | fr.Refused(id=client_id) if client_id in self._answers:
                waiting = self._answers[client_id]
                try:
                    if isinstance(frame, fr.Accepted) and waiting.on_accepted is not None:
                        waiting.on_accepted()
                except Exception as e:  # the caller reports it
                    waiting.answer.set_exception(e)
                else:
                    waiting.answer.set_result(frame)
            case fr.Refused(id=client_id, problem=problem):
                self._refused(client_id, problem)
            case fr.Revoked():
                self._cut_off()

    async def _drain(self) -> None:
        """Handle the queued frames in order, in one transaction, then acknowledge the
        deliveries once durable: stored before acknowledged, as one at a time, for one fsync
        shared with the messages sealed meanwhile (GroupCommit). Accepted frames only drop
        outbox rows, whose loss the relay's deduplication of a resend by client id makes
        harmless: they need no fsync."""
        frames, self._inbound = self._inbound, []
        if not frames:
            return
        batch = self._batch = _Batch()
        try:
            with self._store.db.transaction(durable=False):
                accepted = []
                for frame in frames:
                    if isinstance(frame, fr.Deliver):
                        self._receive(frame.envelope)
                        batch.seqs.append(frame.seq)
                    else:
                        accepted.append((frame.id, frame.sent_at))
                self._sent(self._store.messages.accepted(accepted), batch)
                for group in batch.groups.values():
                    self._store.groups.save(
                        GroupRecord(group.group_id, group.epoch, group.export_state())
                    )
                    # the self-update policy, once per room the batch moved
                    self._update_if_due(_room_id(group.group_id), self._activity_of(group))
        except BaseException:
            for group_id in batch.groups:
                self._groups.pop(group_id, None)  # back to the stored states
            raise
        finally:
            self._batch = None
        for event in batch.events:  # committed: shown now, acknowledged once durable
            self._emit(event)
        if batch.seqs:
            if not self._unacked:
                self._in_background(self._acknowledge_stored())
            self._unacked += batch.seqs

    async def _acknowledge_stored(self) -> None:
        """Acknowledge what was stored in the last moments at once, after one fsync: the
        relay then drops it. A burst then costs the device and the relay one fsync and one
        ack, not one per frame read; a stop in between only has the relay deliver it again,
        and the cache takes it once."""
        await asyncio.sleep(ACK_BATCH_SECONDS)
        seqs, self._unacked = self._unacked, []
        connection = self._connection
        if connection is not None:
            await self._group_commit.durable()
            await connection.ack(seqs)

    def _sent(self, accepted: list[tuple[str, str | None]], batch: _Batch) -> None:
        """Messages the relay accepted (by client id, with their room), which took the relay's
        time: it orders them on every device alike, where the sender's clock would put them
        elsewhere on the sender's."""
        for client_id, room_id in accepted:
            room = None if room_id is None else self._store.rooms.get(room_id)
            if room is not None:
                batch.events.append(MessageSent(room, MessageRef(self.device_id, client_id)))

    def _refused(self, client_id: str, problem: Problem) -> None:
        """An outbox frame the relay refused: for good, it leaves the outbox and its message
        fails; for now (rate limited), it goes again after a backoff."""
        log.warning("the relay refused %s: %s", client_id, problem.code.value)
        if refusal_is_final(problem):
            ref = MessageRef(self.device_id, client_id)
            at = time.time()
            if self._store.outbox.refused(client_id, reason=problem.code.value, at=at) is None:
                return
            message = self._store.messages.get(ref)
            room = None if message is None else self._store.rooms.get(message.room_id)
            if room is not None:
                self._emit(MessageFailed(room, ref, problem.code.value))
            return
        entry = self._store.outbox.get(client_id)
        if entry is None:
            return
        delay = backoff_delay(entry.attempts, random.random)
        self._store.outbox.retry_later(
            client_id, at=time.time() + delay, error=problem.code.value
        )
        self._in_background(self._resend_later(client_id, delay))

    async def _resend_later(self, client_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        entry = self._store.outbox.get(client_id)
        connection = self._connection
        if entry is not None and connection is not None:  # not accepted meanwhile
            await self._group_commit.durable()
            await connection.send(fr.CLIENT_FRAME.validate_json(entry.envelope.frame))

    def _receive(self, envelope: fr.Envelope) -> None:
        """Store what the envelope means; a redelivery or an undecryptable one stores nothing
        (acknowledging it anyway: the relay would only deliver it again). A group the batch
        moved before keeps the batch's state: a failed envelope changed nothing of it, or
        consumed a key it did decrypt with."""
        moved = self._batch is not None and envelope.group_id in self._batch.groups
        try:
            self._settle(envelope)
            match envelope.kind:
                case fr.Kind.NOTICE:
                    self._receive_notice(envelope)
                case fr.Kind.WELCOME:
                    self._receive_welcome(envelope)
                case fr.Kind.COMMIT:
                    self._receive_commit(envelope)
                case fr.Kind.PROPOSAL:
                    self._receive_proposal(envelope)
                case fr.Kind.APPLICATION:
                    self._receive_application(envelope)
                case _:
                    log.info("ignoring a %s envelope", envelope.kind.value)
        except (MLSError, ValidationError, ValueError) as e:
            if not moved:
                self._unload(envelope.group_id)  # back to the stored state
            log.warning("dropping envelope %s: %r", envelope.id, e)
            if isinstance(e, StaleEpochError):
                self._fell_behind(envelope)
        except BaseException:
            self._unload(envelope.group_id)  # not stored, so not acknowledged
            raise

    def _in_batch_or_transaction(self) -> AbstractContextManager[None]:
        """Atomic writes for a received message: the batch's transaction when there is one
        (no savepoint needed: what can fail in a frame, decryption and checks, fails before
        any write), else a transaction of their own."""
        return nullcontext() if self._batch is not None else self._store.db.transaction()

    def _fell_behind(self, envelope: fr.Envelope) -> None:
        """A message for a later epoch than this device's: the relay delivers a commit before
        what follows it, so this device refused (or lost) one the relay took, and can read
        nothing more of the room. Say so, once, rather than drop every message in silence."""
        epoch = _private_epoch(envelope.payload)
        group = self._group(envelope.group_id)
        room = self._store.rooms.by_group(envelope.group_id)
        if (epoch is None or group is None or room is None or not group.active
                or epoch <= group.epoch or self.unreadable(room.id)):
            return
        log.warning("room %s: a message for epoch %d, this device is at %d",
                    room.id, epoch, group.epoch)
        self._store.settings.set(UNREADABLE_SETTING + room.id, epoch)
        self._emit(RoomChanged(room))

    def unreadable(self, room_id: str) -> bool:
        """Whether this device fell out of step with the room (see ``_fell_behind``) and has
        not been invited back since: what it receives there, it cannot read."""
        return self._store.settings.get(UNREADABLE_SETTING + room_id) is not None

    def _unload(self, group_id: bytes) -> None:
        """Forget the loaded state of a group: the stored one is the truth again."""
        self._groups.pop(group_id, None)
        if self._batch is not None:
            self._batch.groups.pop(group_id, None)

    def _receive_welcome(self, envelope: fr.Envelope) -> None:
        """Join a room. A device invited back after it was removed (or after it refused a
        commit the relay took, which left it unable to read on) joins it again: the same room,
        its history kept. A Welcome delivered again changes nothing: its KeyPackage is used up,
        or (a last-resort one) it leads to no later epoch than the device's."""
        existing = self._group(envelope.group_id)
        welcome = MLSMessage.deserialize(envelope.payload).body
        for secrets_for in getattr(welcome, "secrets", []):
            with self._store.db.transaction():
                private = self._store.key_packages.take(secrets_for.new_member)
                if private is None:
                    continue
                parts = _KeyPackagePrivate.model_validate_json(private)
                group = Group.join(
                    envelope.payload,
                    KeyPackage.deserialize(parts.key_package),
                    KeyPackageSecrets(
                        parts.init_priv, parts.encryption_priv, self._account.signature_private_key
                    ),
                    self._validator,
                )
                if existing is not None and group.epoch <= existing.epoch:
                    return  # joined already
                before = self._store.rooms.by_group(group.group_id)
                room = self._room_from(group, created_at=envelope.sent_at if before is None
                                       else before.created_at)
                self._save_group(group)
                self._pending_commits.delete(group.group_id)  # built on the epoch left behind
                self._store.settings.delete(UNREADABLE_SETTING + room.id)
                self._store.rooms.save(room)
                self._store.members.replace(room.id, self._members_of(group, room))
                self._activity.renewed(room.id, at=time.time())  # a fresh leaf
                replaced = self._note_replacement(group, room)
            self._emit(RoomChanged(room))
            if replaced is not None:
                self._emit(RoomChanged(replaced))
            self._in_background(self._top_up_key_packages())
            return
        log.warning(
            "a Welcome for group %s names none of this device's KeyPackages",
            b64encode(envelope.group_id),
        )

    def _receive_notice(self, envelope: fr.Envelope) -> None:
        """A member device was revoked: the relay no longer routes to it, but its leaf keeps
        the room's keys until a member commits its removal. Every member online tries; the
        relay takes one commit for the epoch, and the others, catching up, find it gone."""
        notice = _RevocationNotice.model_validate_json(envelope.payload)
        known = self._revoked_devices()
        if notice.device_id not in known:
            self._store.settings.set(REVOKED_DEVICES, sorted(known | {notice.device_id}))
        group = self._group(envelope.group_id)
        room = self._store.rooms.by_group(envelope.group_id)
        if group is None or room is None or not group.active:
            return
        if notice.device_id in _devices(group):
            revoked = frozenset({notice.device_id})
            self._in_background(self._commit(room.id, _Change(cut_off=revoked)))

    def _revoked_devices(self) -> frozenset[str]:
        """Devices the relay said were revoked: any member may commit their removal, and
        every member must take such a commit whoever made it."""
        return frozenset(self._store.settings.get(REVOKED_DEVICES, []))  # type: ignore[arg-type]

    def _receive_commit(self, envelope: fr.Envelope) -> None:
        group = self._group(envelope.group_id)
        if group is None or not group.active:
            return  # a room we are not in (yet, or any more)
        if envelope.epoch is None or envelope.epoch < group.epoch:
            return  # a commit already applied
        work = group.clone()  # taken only if the room's rules allow it
        event = work.process(envelope.payload)
        if not isinstance(event, CommitApplied):
            raise ValueError("a commit envelope without a commit")
        committer = _user(dict(group.members())[event.sender.index])
        try:
            _check_commit(group, work, committer, self._revoked_devices())
        except roles.RuleBroken as e:
            room = self._store.rooms.by_group(group.group_id)
            if room is not None:
                self._rule_broken(room, committer, str(e))
                with self._store.db.transaction():  # not invited back if the room is reopened
                    self._store.settings.set(REFUSED_SETTING + room.id,
                                             sorted(self._refused_from(room.id) | {committer}))
            return
        if event.removed_me:
            log.info("removed from room %s", _room_id(group.group_id))
        self._took_commit(work, sent_at=envelope.sent_at)

    def _receive_proposal(self, envelope: fr.Envelope) -> None:
        """Keep a member's proposal to leave, and commit it. Other proposals are not kept:
        ``Group.commit`` takes every kept proposal along, and a plain member may not remove
        or add others by proposing it (that takes an owner's commit)."""
        group = self._group(envelope.group_id)
        room = self._store.rooms.by_group(envelope.group_id)
        if group is None or room is None or not group.active:
            return
        work = group.clone()
        event = work.process(envelope.payload)
        if not isinstance(event, ProposalReceived):
            raise ValueError("a proposal envelope without a proposal")
        leaving = _leaving_device(work, event.sender, event.proposal)
        if leaving is None or leaving == self.device_id:
            log.info("ignoring a proposal other than another member leaving")
            return
        with self._store.db.transaction():
            self._save_group(work)
        self._in_background(self._commit(room.id, _Change(remove=frozenset({leaving}))))

    def _receive_application(self, envelope: fr.Envelope) -> None:
        group = self._group(envelope.group_id)
        room = self._store.rooms.by_group(envelope.group_id)
        if group is None or room is None or not group.active or envelope.sender_device is None:
            return  # a removed member cannot decrypt what follows its removal
        ref = MessageRef(envelope.sender_device, envelope.id)
        if self._store.messages.id_of(ref) is not None:
            return  # stored already; its keys are gone, so it could not be decrypted again
        event = group.process(envelope.payload)
        if not isinstance(event, ApplicationMessage):
            raise ValueError("an application envelope without an application message")
        identity = liaison_identity(event.credential)
        if identity.device_id.decode() != envelope.sender_device:
            raise ValueError("the envelope's sender device is not the message's signer")
        content = APPLICATION_CONTENT.validate_json(event.data)
        sender_user = identity.user_id.decode()
        if isinstance(content, ReceiptContent):
            self._receive_receipt(group, room, sender_user, content, envelope.sent_at)
            return
        try:
            roles.check_send(_room_state(group), sender_user)
        except roles.RuleBroken as e:
            with self._store.db.transaction():
                self._save_group(group)
            self._rule_broken(room, sender_user, str(e))
            return
        if isinstance(content, EditContent | RecallContent):
            self._receive_change(group, room, sender_user, ref, content, envelope.sent_at)
            return
        if isinstance(content, DocumentContent):
            message = self._document_message(content, ref, room.id, sender_user, envelope.sent_at)
        elif isinstance(content, ArchivedContent):
            message = archiving.note(content, ref, room.id, sender_user, envelope.sent_at,
                                     time.time())
        else:
            message = NewMessage(
                ref=ref,
                room_id=room.id,
                sender_user=sender_user,
                body=content.body,
                local_ts=time.time(),
                server_ts=envelope.sent_at,
                kind=MessageKind.TEXT,
                priority=Priority.URGENT if content.urgent else Priority.NORMAL,
                reply_to=None
                if content.reply_to is None
                else MessageRef(content.reply_to.device, content.reply_to.id),
            )
        with self._in_batch_or_transaction():
            self._save_group(group)
            stored = self._store.messages.add_incoming(message)
        if stored is None:
            return
        self._emit(MessageReceived(room, stored))
        if stored.priority is Priority.URGENT and sender_user != self.user_id:
            self._emit(UrgentReceived(room, stored))
        if sender_user != self.user_id and group.member_count <= self.delivered_receipt_devices:
            if not self._delivered:
                self._in_background(self._send_delivered())
            self._delivered.setdefault(room.id, []).append(stored.ref)

    def _receive_change(
        self,
        group: Group,
        room: Room,
        sender_user: str,
        change_ref: MessageRef,
        content: EditContent | RecallContent,
        at: float,
    ) -> None:
        """Apply an edit or recall of a message of this room; one of another user's message
        breaks the rules and is dropped."""
        target = MessageRef(content.target.device, content.target.id)
        message = self._store.messages.get(target)
        refused = None
        with self._store.db.transaction():
            self._save_group(group)
            if message is None or message.room_id != room.id:
                log.info("ignoring a change of a message not in room %s", room.id)
                return
            try:
                changed = self._change_message(target, content, sender_user, change_ref, at)
            except NotSenderError as e:
                changed, refused = False, str(e)
        if refused is not None:
            self._rule_broken(room, sender_user, refused)
        elif changed:
            self._message_changed(room.id, target)

    def _receive_receipt(
        self, group: Group, room: Room, sender_user: str, receipt: ReceiptContent, at: float
    ) -> None:
        """Record another user's receipt for this user's messages of the room. The rest is
        ignored: this user's other devices' receipts, and messages of other rooms or senders,
        whose status a receipt must not move."""
        kind = MessageStatus[receipt.kind.upper()]
        with self._in_batch_or_transaction():
            self._save_group(group)
            if sender_user == self.user_id:
                return
            recorded = self._store.receipts.add_to_own(
                [MessageRef(r.device, r.id) for r in receipt.messages],
                Receipt(sender_user, kind, at),
                room_id=room.id,
                sender_user=self.user_id,
            )
        for ref in recorded:
            self._emit(ReceiptReceived(room, ref, sender_user, kind))


def _room_state(group: Group) -> RoomState:
    data = ext.find(group.context.extensions, ext.LIAISON_ROOM_STATE)
    if data is None:
        raise ValueError("the group carries no room state")
    return _parsed_room_state(data)


@functools.lru_cache(maxsize=256)  # checked for every message: parsed once per room and epoch
def _parsed_room_state(data: bytes) -> RoomState:
    return RoomState.model_validate_json(data)


def _state(**fields: Any) -> RoomState:
    """A room state this device is about to propose, with a clear error for bad input."""
    if not str(fields.get("name", "")).strip():
        raise EngineError("a room needs a name")
    if fields.get("patient") is not None and fields.get("kind") is not RoomKind.PATIENT:
        raise EngineError("only a patient room carries a patient context")
    try:
        return RoomState.model_validate(fields)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise EngineError(f"invalid room state: {problems}") from None


def _with_role(state: RoomState, user_id: str, role: RoomRole) -> RoomState:
    """The state with ``user_id``'s role set; plain members are not named (one way to say it)."""
    roles_ = {u: r for u, r in state.roles.items() if u != user_id}
    if role is not RoomRole.MEMBER:
        roles_[user_id] = role
    return state.model_copy(update={"roles": roles_})


def _state_extensions(group: Group, state: RoomState) -> list[ext.Extension]:
    """The group's extensions with the room state replaced."""
    kept = [e for e in group.context.extensions if e.extension_type != ext.LIAISON_ROOM_STATE]
    return [*kept, ext.Extension(ext.LIAISON_ROOM_STATE, state.model_dump_json().encode())]


def _check_commit(
    before: Group, after: Group, committer: str, revoked: frozenset[str] = frozenset()
) -> None:
    """The room's rules for a commit by ``committer`` taking the group from ``before`` to
    ``after`` (app/client/roles.py); any member may remove a ``revoked`` device, as one
    that leaves."""
    roles.check_commit(
        committer,
        _room_state(before),
        _room_state(after),
        _devices(before),
        _devices(after),
        _leaving(before) | revoked,
    )


def _directory_entry(user: rest.User) -> DirectoryEntry:
    return DirectoryEntry(
        user_id=user.id,
        display_name=user.display_name,
        profession=user.profession.value,
        specialty=user.specialty,
        services=tuple(user.services),
        sites=tuple(user.sites),
        rpps=user.rpps,
        roles=tuple(user.roles),
        active=user.status is rest.UserStatus.ACTIVE,
    )


def _reference(ref: MessageRef) -> Reference:
    return Reference(device=ref.sender_device, id=ref.client_id)


def _receipt(kind: ReceiptKind, refs: list[MessageRef]) -> ReceiptContent:
    return ReceiptContent(kind=kind, messages=[_reference(r) for r in refs])


def _user(credential: Credential) -> str:
    return liaison_identity(credential).user_id.decode()


def _devices(group: Group) -> dict[str, str]:
    """The group's member devices and their users, as their attested credentials name them."""
    out = {}
    for _, credential in group.members():
        identity = liaison_identity(credential)
        out[identity.device_id.decode()] = identity.user_id.decode()
    return out


def _build(group: Group, change: _Change) -> tuple[PendingCommit, list[str], list[str]] | None:
    """The commit making ``change`` on the group's current epoch, with the devices it adds and
    removes (declared to the relay for routing); None when the group has it already.

    Proposals the group holds go along by reference, so a leaf they remove is not named again.
    """
    leaves = {liaison_identity(c).device_id.decode(): leaf for leaf, c in group.members()}
    proposed = {
        p.proposal.body.removed
        for p in group.proposals.values()
        if isinstance(p.proposal.body, prop.Remove)
    }
    add = [kp for device, kp in change.add.items() if device not in leaves]
    removing = [leaves[d] for d in change.remove | change.cut_off if d in leaves]
    state = _room_state(group)
    new_state = state if change.state is None else change.state(state)
    if not add and not removing and new_state == state and change.update_from != group.epoch:
        return None
    pending = group.commit(
        add=add,
        remove=[leaf for leaf in removing if leaf not in proposed],
        extensions=None if new_state == state else _state_extensions(group, new_state),
    )
    before, after = set(leaves), set(_devices(pending.next_group))
    return pending, sorted(after - before), sorted(before - after - change.cut_off)


def _leaving(group: Group) -> frozenset[str]:
    """Devices whose own user proposed their removal, in proposals the group holds."""
    leaving = (_leaving_device(group, p.sender, p.proposal) for p in group.proposals.values())
    return frozenset(device for device in leaving if device is not None)


def _leaving_device(group: Group, sender: Sender, proposal: prop.Proposal) -> str | None:
    """The device a Remove proposal (received now, or held) takes out, if its own user
    proposed it (leaving)."""
    body = proposal.body
    if not isinstance(body, prop.Remove):
        return None
    credentials = dict(group.members())
    proposer, removed = credentials.get(sender.index), credentials.get(body.removed)
    if proposer is None or removed is None or _user(proposer) != _user(removed):
        return None
    return liaison_identity(removed).device_id.decode()


def _key_package(wire: bytes) -> KeyPackage:
    """A claimed KeyPackage, as the relay hands it out: inside an MLSMessage."""
    body = MLSMessage.deserialize(wire).body
    if not isinstance(body, KeyPackage):
        raise EngineError("the relay handed out something that is not a KeyPackage")
    return body


def _private_epoch(payload: bytes) -> int | None:
    """The epoch an application message (a PrivateMessage) was sent in; None for others."""
    body = MLSMessage.deserialize(payload).body
    return body.epoch if isinstance(body, PrivateMessage) else None


def _room_id(group_id: bytes) -> str:
    """Every member names the room alike: after its group. The "r" keeps a room id from ever
    starting with "-", which a command line would take for an option."""
    return "r" + b64encode(group_id)


@functools.lru_cache(maxsize=4096)  # every message sent names its room: decoded once per room
def _group_id(room_id: str) -> bytes | None:
    """The group a room id names, or None if it names none."""
    try:
        group_id = b64decode(room_id.removeprefix("r"))
    except ValueError:
        return None
    return group_id if _room_id(group_id) == room_id else None


def _client_id() -> str:
    """A message's id: the millisecond it was made (12 hex digits), then 96 random bits. Ids
    made one after another sort together, so the cache's index on them grows at its end: with
    128 random bits each message landed on another page of a large index, which a commit then
    encrypted and wrote out. The relay learns when a message was written, which is when its
    frame arrives unless the device was offline.
    The "m" keeps it from ever starting with "-", which a command line (``liaison ack ID``)
    would take for an option."""
    return f"m{time.time_ns() // 1_000_000:012x}{secrets.token_urlsafe(12)}"


def _new_profile(profile_dir: Path) -> None:
    """Refuse to enrol or link into a profile that holds an account already."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    if (profile_dir / ACCOUNT_FILE).exists():
        raise EngineError(f"{profile_dir} already holds an account")


def _ws_url(relay_url: str) -> str:
    base = relay_url.rstrip("/")
    scheme, _, rest = base.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/v1/ws"
