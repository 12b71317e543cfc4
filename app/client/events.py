"""Typed events the engine emits to its subscribers (a UI's view-models, the CLI, tests)."""

from __future__ import annotations

from dataclasses import dataclass

from app.client.connection import State
from storage.messages import Message
from storage.rooms import Room


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message from another device, already stored in the cache."""

    room: Room
    message: Message


@dataclass(frozen=True, slots=True)
class RoomChanged:
    """A room was joined, created, or its state or membership changed."""

    room: Room


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    state: State


Event = MessageReceived | RoomChanged | ConnectionChanged
