"""Typed events the engine emits to its subscribers (a UI's view-models, the CLI, tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.client.connection import State
from storage.messages import Message, MessageRef
from storage.rooms import Room
from storage.status import MessageStatus


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message from another device, already stored in the cache."""

    room: Room
    message: Message


@dataclass(frozen=True, slots=True)
class ReceiptReceived:
    """Another user's device reported ``kind`` (delivered, read or acknowledged) for one of
    this user's messages; the receipt is recorded and the message's status advanced."""

    room: Room
    message_ref: MessageRef
    user_id: str
    kind: MessageStatus


@dataclass(frozen=True, slots=True)
class RoomChanged:
    """A room was joined, created, or its state or membership changed.

    ``active`` is False once this device is out of the room: removed by a member (the room
    stays, read-only, with its history) or after leaving it (the room is forgotten).
    """

    room: Room
    active: bool = True


@dataclass(frozen=True, slots=True)
class MessageChanged:
    """A cached message was edited or recalled (here or by its sender elsewhere): ``message``
    is its new state, a tombstone with no body once recalled."""

    room: Room
    message: Message


@dataclass(frozen=True, slots=True)
class UrgentReceived:
    """An urgent message from another user arrived (after its MessageReceived): the UI
    alerts until it is acknowledged."""

    room: Room
    message: Message


@dataclass(frozen=True, slots=True)
class RoomRuleBroken:
    """A member's commit or message broke the room's rules (app/client/roles.py) and was not
    taken: the room's state is unchanged, the message dropped."""

    room: Room
    user_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    state: State


@dataclass(frozen=True, slots=True)
class MessageSent:
    """The relay accepted one of this device's messages: it is sent (no longer pending) and
    takes its place in the room's order at the relay's time."""

    room: Room
    message_ref: MessageRef


@dataclass(frozen=True, slots=True)
class MessageFailed:
    """The relay refused one of this device's messages for good (``reason``: its problem
    code): it left the outbox and will not be sent again."""

    room: Room
    message_ref: MessageRef
    reason: str


@dataclass(frozen=True, slots=True)
class DeviceRevoked:
    """This device was revoked: the engine is offline for good and refuses every operation.
    Whether to wipe the local data (``Engine.sign_out``) is the UI's decision."""


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """A document's upload (``send_file``) or download (``fetch_file``) moved on: ``done`` of
    ``total`` bytes of ciphertext. ``done`` never goes back, even across a resumed transfer.
    An upload's message is stored (pending) only once the upload is complete."""

    room: Room
    message_ref: MessageRef
    direction: Literal["upload", "download"]
    done: int
    total: int


Event = (
    MessageReceived
    | ReceiptReceived
    | RoomChanged
    | ConnectionChanged
    | TransferProgress
    | MessageChanged
    | UrgentReceived
    | RoomRuleBroken
    | MessageSent
    | MessageFailed
    | DeviceRevoked
)
