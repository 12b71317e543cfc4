"""Typed events the engine emits to its subscribers (a UI's view-models, the CLI, tests)."""

from __future__ import annotations

from dataclasses import dataclass

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
class ConnectionChanged:
    state: State


Event = MessageReceived | ReceiptReceived | RoomChanged | ConnectionChanged
