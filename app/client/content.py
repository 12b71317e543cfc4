"""What travels inside MLS: the plaintext of application messages and the room state.

Both are small JSON documents. They are only ever seen encrypted by the relay, so they may
carry what the relay must not learn (bodies, room names); models keep parsing strict, because
a member's device is as untrusted an input as the network.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from storage.members import RoomRole
from storage.rooms import RoomKind


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reference(_Model):
    """A message named across devices: its sender's device and the client id it chose."""

    device: str
    id: str


class TextContent(_Model):
    type: Literal["text"] = "text"
    body: str
    urgent: bool = False
    reply_to: Reference | None = None


class RoomState(_Model):
    """The room as every member agrees on it: the GroupContext's LIAISON_ROOM_STATE."""

    kind: RoomKind
    name: str
    roles: dict[str, RoomRole] = {}  # user id -> role; absent users are plain members
