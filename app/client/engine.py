"""The client engine of one device: rooms, messages and sync over the relay, end to end encrypted.

The engine joins crypto/ (one MLS group per room), storage/ (the encrypted cache: group states,
messages, outbox) and the relay (REST for accounts and KeyPackages, one WebSocket for frames).
Its rules are those of DESIGN.md "The way a message travels": a message is written to the
outbox with the group state that encrypted it before it is sent; an incoming envelope is
stored with the group state that decrypted it before it is acknowledged; commits are applied
only once the relay has accepted them, so every member walks through the same epochs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ValidationError

from app.client.connection import Connection, State
from app.client.content import Reference, RoomState, TextContent
from app.client.events import ConnectionChanged, Event, MessageReceived, RoomChanged
from app.client.relay_api import RelayClient
from crypto import extensions as ext
from crypto.cipher_suite import suite
from crypto.credential import Credential, liaison_identity, organisation_validator
from crypto.errors import MLSError
from crypto.group import ApplicationMessage, CommitApplied, Group, KeyPackageSecrets
from crypto.group import create_key_package as new_key_package
from crypto.key_package import KeyPackage
from crypto.message import MLSMessage
from protocol import frames as fr
from protocol.encoding import B64, b64encode
from storage.accounts import Account
from storage.custody import KeyCustody, load_or_create_key
from storage.groups import GroupRecord
from storage.local_store import LocalStore
from storage.members import Member, RoomRole
from storage.messages import Message, MessageKind, MessageRef, NewMessage, Priority
from storage.outbox import OutboundEnvelope
from storage.rooms import Room, RoomKind

log = logging.getLogger("liaison.client.engine")

CIPHER_SUITE = suite(0x0003)
KEY_PACKAGES = 20  # one-time KeyPackages published at enrolment
DATABASE = "liaison.db"
ACCOUNT_FILE = "account"  # the custody id of the profile's database key (not a secret)


class EngineError(Exception):
    """An operation the engine could not carry out; the message says why, for the UI."""


class _KeyPackagePrivate(BaseModel):
    """What storage keeps for a published KeyPackage: enough to join from a Welcome."""

    key_package: B64
    init_priv: B64
    encryption_priv: B64


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
        self._answers: dict[str, asyncio.Future[fr.Accepted | fr.Refused]] = {}
        self._subscribers: list[Callable[[Event], None]] = []

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
        """Go offline and close the cache; unsent messages stay in the outbox."""
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        for waiting in self._answers.values():
            waiting.cancel()
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
            answer = await self._request(connection, frame)
            if isinstance(answer, fr.Refused):
                raise EngineError(f"the relay refused the new room: {answer.problem.code.value}")
            group.apply(pending)
        room = self._room_from(group, created_at=time.time())
        with self._store.db.transaction():
            self._save_group(group)
            self._store.rooms.save(room)
            self._store.members.replace(room.id, self._members_of(group, room))
        self._emit(RoomChanged(room))
        return room.id

    async def _request(self, connection: Connection, frame: fr.Commit) -> fr.Accepted | fr.Refused:
        """Send a frame whose answer decides what happens next, and wait for it."""
        answer = asyncio.get_running_loop().create_future()
        self._answers[frame.id] = answer
        try:
            await connection.send(frame)
            return await answer
        finally:
            del self._answers[frame.id]

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
        users = {liaison_identity(c).user_id.decode() for _, c in group.members()}
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

    # -- sending -----------------------------------------------------------------------------
    async def send_text(
        self, room_id: str, body: str, *, urgent: bool = False, reply_to: MessageRef | None = None
    ) -> MessageRef:
        """Encrypt, store with its outbox row, then send; the message shows as pending until
        the relay accepts it, and is resent by every ``start`` until then."""
        room = self._store.rooms.get(room_id)
        group = None if room is None else self._group(room.group_id)
        if room is None or group is None:
            raise EngineError(f"unknown room {room_id}")
        client_id = _client_id()
        content = TextContent(
            body=body,
            urgent=urgent,
            reply_to=None
            if reply_to is None
            else Reference(device=reply_to.sender_device, id=reply_to.client_id),
        )
        ref = MessageRef(self.device_id, client_id)
        frame = fr.Send(
            id=client_id,
            group_id=group.group_id,
            payload=group.encrypt(content.model_dump_json().encode()),
        )
        message = NewMessage(
            ref=ref,
            room_id=room_id,
            sender_user=self.user_id,
            body=body,
            local_ts=time.time(),
            priority=Priority.URGENT if urgent else Priority.NORMAL,
            reply_to=reply_to,
        )
        envelope = OutboundEnvelope(
            client_id=client_id,
            group_id=group.group_id,
            frame=frame.model_dump_json(exclude_none=True).encode(),
        )
        try:
            with self._store.db.transaction():
                self._save_group(group)
                self._store.messages.add_outgoing(message, envelope)
        except BaseException:
            self._groups.pop(group.group_id, None)  # the stored state is the truth
            raise
        if self._connection is not None:
            await self._connection.send(frame)
        return ref

    # -- receiving ---------------------------------------------------------------------------
    async def _on_frame(self, frame: fr.Accepted | fr.Refused | fr.Deliver | fr.Revoked) -> None:
        match frame:
            case fr.Accepted(id=client_id) | fr.Refused(id=client_id) if client_id in self._answers:
                self._answers[client_id].set_result(frame)
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
        if group is None or envelope.epoch is None or envelope.epoch < group.epoch:
            return  # a room we are not in yet, or a commit already applied
        event = group.process(envelope.payload)
        if not isinstance(event, CommitApplied):
            raise ValueError("a commit envelope without a commit")
        room = self._store.rooms.by_group(group.group_id)
        created_at = room.created_at if room is not None else envelope.sent_at
        room = self._room_from(group, created_at=created_at)
        with self._store.db.transaction():
            self._save_group(group)
            self._store.rooms.save(room)
            self._store.members.replace(room.id, self._members_of(group, room))
        self._emit(RoomChanged(room))

    def _receive_application(self, envelope: fr.Envelope) -> None:
        group = self._group(envelope.group_id)
        room = self._store.rooms.by_group(envelope.group_id)
        if group is None or room is None or envelope.sender_device is None:
            return
        ref = MessageRef(envelope.sender_device, envelope.id)
        if self._store.messages.id_of(ref) is not None:
            return  # stored already; its keys are gone, so it could not be decrypted again
        event = group.process(envelope.payload)
        if not isinstance(event, ApplicationMessage):
            raise ValueError("an application envelope without an application message")
        identity = liaison_identity(event.credential)
        if identity.device_id.decode() != envelope.sender_device:
            raise ValueError("the envelope's sender device is not the message's signer")
        content = TextContent.model_validate_json(event.data)
        message = NewMessage(
            ref=ref,
            room_id=room.id,
            sender_user=identity.user_id.decode(),
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
        if stored is not None:
            self._emit(MessageReceived(room, stored))


def _room_state(group: Group) -> RoomState:
    data = ext.find(group.context.extensions, ext.LIAISON_ROOM_STATE)
    if data is None:
        raise ValueError("the group carries no room state")
    return RoomState.model_validate_json(data)


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
