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
import logging
import os
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from app.client.connection import Connection, State
from app.client.content import (
    APPLICATION_CONTENT,
    ReceiptContent,
    ReceiptKind,
    Reference,
    RoomState,
    TextContent,
)
from app.client.events import (
    ConnectionChanged,
    Event,
    MessageReceived,
    ReceiptReceived,
    RoomChanged,
)
from app.client.relay_api import RelayClient
from crypto import extensions as ext
from crypto import proposals as prop
from crypto.cipher_suite import suite
from crypto.credential import Credential, liaison_identity, organisation_validator
from crypto.errors import MLSError
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
from protocol.encoding import B64, b64encode
from protocol.problems import Code
from storage.accounts import Account
from storage.custody import KeyCustody, load_or_create_key
from storage.groups import GroupRecord
from storage.local_store import LocalStore
from storage.members import Member, RoomRole
from storage.messages import Message, MessageKind, MessageRef, NewMessage, Priority
from storage.outbox import OutboundEnvelope
from storage.receipts import Receipt
from storage.rooms import Room, RoomKind
from storage.status import MessageStatus

log = logging.getLogger("liaison.client.engine")

CIPHER_SUITE = suite(0x0003)
KEY_PACKAGES = 20  # one-time KeyPackages published at enrolment
DATABASE = "liaison.db"
ACCOUNT_FILE = "account"  # the custody id of the profile's database key (not a secret)
COMMIT_ATTEMPTS = 5  # a room that changes this often under us is not worth racing further
CATCH_UP_SECONDS = 30.0  # how long a refused commit waits for the commits it missed
RECEIPT_BATCH_SECONDS = 0.05  # a burst of messages received in this time costs one receipt


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


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A frame whose answer someone awaits; ``on_accepted`` runs before any later frame is
    handled, so that a commit is applied before messages of its new epoch arrive."""

    answer: asyncio.Future[fr.Accepted | fr.Refused]
    on_accepted: Callable[[], None] | None


class Engine:
    """One enrolled device. Build it with ``enroll`` or ``open``; ``start`` goes online."""

    def __init__(self, store: LocalStore, account: Account) -> None:
        self._store = store
        self._account = account
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
        # the otpauth:// URI the relay gave at a user's first enrolment (shown once, not stored)
        self.totp_uri: str | None = None

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
        profile_dir.mkdir(parents=True, exist_ok=True)
        if (profile_dir / ACCOUNT_FILE).exists():
            raise EngineError(f"{profile_dir} already holds an account")
        seed = os.urandom(32)
        async with RelayClient(relay_url) as relay:
            answer = await relay.enroll(invite_code, device_name, seed)
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
        (profile_dir / ACCOUNT_FILE).write_text(answer.device_id, "utf-8")
        engine = cls(store, account)
        engine.totp_uri = answer.totp_uri
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
        return cls(store, account)

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

    async def _publish_key_packages(self) -> None:
        """Publish one-time KeyPackages and a last-resort one, keeping their private halves
        first: a KeyPackage the relay hands out must always be joinable."""
        one_time = [self._new_key_package(last_resort=False) for _ in range(KEY_PACKAGES)]
        last_resort = self._new_key_package(last_resort=True)
        await self._relay.upload_key_packages(one_time, last_resort)

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
        """Log in, open the WebSocket, and resend whatever the outbox still holds."""
        token = await self._login()
        self._connection = Connection(
            _ws_url(self._account.relay_url),
            token,
            on_event=self._on_frame,
            on_state=self._on_state,
            refresh_token=self._login,
        )
        for entry in self._store.outbox.due(time.time()):
            await self._connection.send(fr.CLIENT_FRAME.validate_json(entry.envelope.frame))
        self._connection.start()

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
        self._store.close()

    async def _login(self) -> str:
        token = await self._relay.login(
            self._account.device_id, self._account.signature_private_key
        )
        return token.token

    def _on_state(self, state: State) -> None:
        self._emit(ConnectionChanged(state))

    # -- events and queries ------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` with every event from now on; returns the unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _emit(self, event: Event) -> None:
        for callback in list(self._subscribers):
            callback(event)

    def rooms(self) -> list[Room]:
        return self._store.rooms.all()

    def messages(self, room_id: str, limit: int = 50) -> list[Message]:
        """The room's last ``limit`` messages, oldest first."""
        return self._store.messages.latest(room_id, limit=limit)

    def members(self, room_id: str) -> list[Member]:
        return self._store.members.of_room(room_id)

    def unacknowledged_urgent(self) -> list[Message]:
        """Urgent messages this user has not acknowledged yet, in every room, oldest first."""
        return self._store.messages.unacknowledged_urgent(self.user_id)

    def unsent(self) -> int:
        """Frames (messages, receipts) the relay has not accepted yet: a short-lived client
        waits for none before going offline."""
        return len(self._store.outbox)

    # -- rooms -------------------------------------------------------------------------------
    async def create_room(self, kind: RoomKind, name: str, member_user_ids: list[str]) -> str:
        """A new room with every device of these users (and this user's other devices)."""
        connection = self._online()
        device_ids: list[str] = []
        for user_id in dict.fromkeys([*member_user_ids, self.user_id]):
            listed = await self._relay.user_devices(user_id)
            device_ids += [d.id for d in listed.devices if not d.revoked and d.id != self.device_id]
        claimed = (
            (await self._relay.claim_key_packages(device_ids)).key_packages if device_ids else []
        )
        state = RoomState(kind=kind, name=name, roles={self.user_id: RoomRole.OWNER})
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
        if claimed:
            pending = group.commit(add=[_key_package(c.key_package) for c in claimed])
            frame = fr.Commit(
                id=_client_id(),
                group_id=group_id,
                epoch=group.epoch,
                payload=pending.message,
                welcome=pending.welcome,
                add_devices=[c.device_id for c in claimed],
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
        """Add every device of these users that is not in the room yet."""
        group = self._member_group(room_id)
        present = _devices(group)
        device_ids = []
        for user_id in dict.fromkeys(user_ids):
            listed = await self._relay.user_devices(user_id)
            device_ids += [d.id for d in listed.devices if not d.revoked and d.id not in present]
        if not device_ids:
            return
        claimed = (await self._relay.claim_key_packages(device_ids)).key_packages
        add = {c.device_id: _key_package(c.key_package) for c in claimed}
        await self._commit(room_id, _Change(add=add))

    async def remove(self, room_id: str, user_id: str) -> None:
        """Remove every device of ``user_id``; to remove oneself, ``leave``."""
        if user_id == self.user_id:
            raise EngineError("a member cannot remove itself: leave the room instead")
        group = self._member_group(room_id)
        devices = frozenset(device for device, user in _devices(group).items() if user == user_id)
        if not devices:
            raise EngineError(f"{user_id} is not in the room")
        await self._commit(room_id, _Change(remove=devices))

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
        self._groups.pop(group.group_id, None)
        self._emit(RoomChanged(room, active=False))

    async def _commit(self, room_id: str, change: _Change) -> None:
        """Commit ``change``; refused as stale, catch up with the room and build it again."""
        connection = self._online()
        async with self._committing:
            for _ in range(COMMIT_ATTEMPTS):
                group = self._member_group(room_id)
                built = _build(group, change)
                if built is None:
                    return  # someone else made the change already
                pending, added, removed = built
                frame = fr.Commit(
                    id=_client_id(),
                    group_id=group.group_id,
                    epoch=group.epoch,
                    payload=pending.message,
                    welcome=pending.welcome,
                    add_devices=added,
                    remove_devices=removed,
                )
                answer = await self._request(
                    connection, frame, lambda g=group, p=pending: self._own_commit(g, p)
                )
                if isinstance(answer, fr.Accepted):
                    return
                if answer.problem.code is not Code.STALE_EPOCH or answer.problem.epoch is None:
                    raise EngineError(f"the relay refused the change: {answer.problem.code.value}")
                await self._caught_up(group.group_id, answer.problem.epoch)
        raise EngineError("the room kept changing: try again")

    def _own_commit(self, group: Group, pending: PendingCommit) -> None:
        group.apply(pending)
        self._took_commit(group)

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
        room = self._store.rooms.get(room_id)
        group = None if room is None else self._group(room.group_id)
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
        """Persist ``group`` (inside the caller's transaction) and keep it loaded."""
        self._store.groups.save(GroupRecord(group.group_id, group.epoch, group.export_state()))
        self._groups[group.group_id] = group

    def _took_commit(self, group: Group, *, sent_at: float | None = None) -> None:
        """Persist a group that moved to a new epoch (or out of which we were removed) with
        its room and members, and tell the UI and whoever waits for the room to move."""
        room = self._store.rooms.by_group(group.group_id)
        created_at = room.created_at if room is not None else sent_at or time.time()
        room = self._room_from(group, created_at=created_at)
        with self._store.db.transaction():
            self._save_group(group)
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
        group = self._member_group(room_id)
        content = TextContent(
            body=body,
            urgent=urgent,
            reply_to=None
            if reply_to is None
            else Reference(device=reply_to.sender_device, id=reply_to.client_id),
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
        await self._send(self._seal(group, content, ref.client_id, message))
        return ref

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
        content = ReceiptContent(
            kind=kind,
            messages=[Reference(device=r.sender_device, id=r.client_id) for r in refs],
        )
        return self._seal(self._member_group(room_id), content, _client_id(), None)

    def _queue_delivered(self) -> list[fr.Send]:
        """One delivered receipt per room for what was received since the last one; a room
        left meanwhile gets none."""
        pending, self._delivered = self._delivered, {}
        frames = []
        for room_id, refs in pending.items():
            try:
                frames.append(self._queue_receipt(room_id, "delivered", refs))
            except EngineError as e:
                log.info("no delivered receipt for room %s: %s", room_id, e)
        return frames

    async def _send_delivered(self) -> None:
        await asyncio.sleep(RECEIPT_BATCH_SECONDS)
        for frame in self._queue_delivered():
            await self._send(frame)

    def _seal(
        self,
        group: Group,
        content: TextContent | ReceiptContent,
        client_id: str,
        message: NewMessage | None,
    ) -> fr.Send:
        """Encrypt ``content`` and store the frame in the outbox with the group state that
        encrypted it (and with ``message``, the cached message it carries, if any) before it
        goes anywhere."""
        frame = fr.Send(
            id=client_id,
            group_id=group.group_id,
            payload=group.encrypt(content.model_dump_json().encode()),
        )
        envelope = OutboundEnvelope(
            client_id=client_id,
            group_id=group.group_id,
            frame=frame.model_dump_json(exclude_none=True).encode(),
        )
        try:
            with self._store.db.transaction():
                self._save_group(group)
                if message is None:
                    self._store.outbox.enqueue(envelope, now=time.time())
                else:
                    self._store.messages.add_outgoing(message, envelope)
        except BaseException:
            self._groups.pop(group.group_id, None)  # the stored state is the truth
            raise
        return frame

    async def _send(self, frame: fr.Send) -> None:
        """Send a frame already in the outbox; offline, ``start`` sends it."""
        if self._connection is not None:
            await self._connection.send(frame)

    # -- receiving ---------------------------------------------------------------------------
    async def _on_frame(self, frame: fr.Accepted | fr.Refused | fr.Deliver | fr.Revoked) -> None:
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
            case fr.Accepted(id=client_id):
                self._store.outbox.accepted(client_id)
            case fr.Refused(id=client_id, problem=problem):
                log.warning("the relay refused %s: %s", client_id, problem.code.value)
            case fr.Deliver(seq=seq, envelope=envelope):
                self._receive(envelope)
                await self._online().ack([seq])
            case fr.Revoked():
                log.warning("this device was revoked")

    def _receive(self, envelope: fr.Envelope) -> None:
        """Store what the envelope means; a redelivery or an undecryptable one stores nothing
        (acknowledging it anyway: the relay would only deliver it again)."""
        try:
            match envelope.kind:
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
            self._groups.pop(envelope.group_id, None)  # back to the stored state
            log.warning("dropping envelope %s: %r", envelope.id, e)
        except BaseException:
            self._groups.pop(envelope.group_id, None)  # not stored, so not acknowledged
            raise

    def _receive_welcome(self, envelope: fr.Envelope) -> None:
        if self._group(envelope.group_id) is not None:
            return  # joined already: a redelivery
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
                room = self._room_from(group, created_at=envelope.sent_at)
                self._save_group(group)
                self._store.rooms.save(room)
                self._store.members.replace(room.id, self._members_of(group, room))
            self._emit(RoomChanged(room))
            return
        log.warning(
            "a Welcome for group %s names none of this device's KeyPackages",
            b64encode(envelope.group_id),
        )

    def _receive_commit(self, envelope: fr.Envelope) -> None:
        group = self._group(envelope.group_id)
        if group is None or not group.active:
            return  # a room we are not in (yet, or any more)
        if envelope.epoch is None or envelope.epoch < group.epoch:
            return  # a commit already applied
        event = group.process(envelope.payload)
        if not isinstance(event, CommitApplied):
            raise ValueError("a commit envelope without a commit")
        if event.removed_me:
            log.info("removed from room %s", _room_id(group.group_id))
        self._took_commit(group, sent_at=envelope.sent_at)

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
        leaving = _leaving_device(work, event)
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
        with self._store.db.transaction():
            self._save_group(group)
            stored = self._store.messages.add_incoming(message)
        if stored is None:
            return
        self._emit(MessageReceived(room, stored))
        if sender_user != self.user_id:
            if not self._delivered:
                self._in_background(self._send_delivered())
            self._delivered.setdefault(room.id, []).append(stored.ref)

    def _receive_receipt(
        self, group: Group, room: Room, sender_user: str, receipt: ReceiptContent, at: float
    ) -> None:
        """Record another user's receipt for this user's messages of the room. The rest is
        ignored: this user's other devices' receipts, and messages of other rooms or senders,
        whose status a receipt must not move."""
        kind = MessageStatus[receipt.kind.upper()]
        recorded = []
        with self._store.db.transaction():
            self._save_group(group)
            if sender_user == self.user_id:
                return
            for reference in receipt.messages:
                ref = MessageRef(reference.device, reference.id)
                mine = self._store.messages.get(ref)
                if mine is None or mine.room_id != room.id or mine.sender_user != self.user_id:
                    continue
                if self._store.receipts.add(ref, Receipt(sender_user, kind, at)):
                    recorded.append(ref)
        for ref in recorded:
            self._emit(ReceiptReceived(room, ref, sender_user, kind))


def _room_state(group: Group) -> RoomState:
    data = ext.find(group.context.extensions, ext.LIAISON_ROOM_STATE)
    if data is None:
        raise ValueError("the group carries no room state")
    return RoomState.model_validate_json(data)


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
    removing = [leaves[d] for d in change.remove if d in leaves]
    if not add and not removing:
        return None
    pending = group.commit(add=add, remove=[leaf for leaf in removing if leaf not in proposed])
    before, after = set(leaves), set(_devices(pending.next_group))
    return pending, sorted(after - before), sorted(before - after)


def _leaving_device(group: Group, event: ProposalReceived) -> str | None:
    """The device a Remove proposal takes out, if its own user proposed it (leaving)."""
    body = event.proposal.body
    if not isinstance(body, prop.Remove):
        return None
    credentials = dict(group.members())
    proposer, removed = credentials.get(event.sender.index), credentials.get(body.removed)
    if proposer is None or removed is None or _user(proposer) != _user(removed):
        return None
    return liaison_identity(removed).device_id.decode()


def _key_package(wire: bytes) -> KeyPackage:
    """A claimed KeyPackage, as the relay hands it out: inside an MLSMessage."""
    body = MLSMessage.deserialize(wire).body
    if not isinstance(body, KeyPackage):
        raise EngineError("the relay handed out something that is not a KeyPackage")
    return body


def _room_id(group_id: bytes) -> str:
    """Every member names the room alike: after its group."""
    return b64encode(group_id)


def _client_id() -> str:
    return secrets.token_urlsafe(16)


def _ws_url(relay_url: str) -> str:
    base = relay_url.rstrip("/")
    scheme, _, rest = base.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/v1/ws"
