"""What travels inside MLS: the plaintext of application messages and the room state.

Both are small JSON documents. They are only ever seen encrypted by the relay, so they may
carry what the relay must not learn (bodies, room names); models keep parsing strict, because
a member's device is as untrusted an input as the network.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

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


ReceiptKind = Literal["delivered", "read", "acknowledged"]


class ReceiptContent(_Model):
    """How far the sender's device has got with others' messages of the room.

    One receipt names many messages, so that a burst of messages costs one envelope back
    rather than one each. ``acknowledged`` is a clinician confirming an urgent message,
    distinct from having read it.
    """

    type: Literal["receipt"] = "receipt"
    kind: ReceiptKind
    messages: list[Reference] = Field(min_length=1)


APPLICATION_CONTENT: TypeAdapter[TextContent | ReceiptContent] = TypeAdapter(
    Annotated[TextContent | ReceiptContent, Field(discriminator="type")]
)


class RoomState(_Model):
    """The room as every member agrees on it: the GroupContext's LIAISON_ROOM_STATE."""

    kind: RoomKind
    name: str
    roles: dict[str, RoomRole] = {}  # user id -> role; absent users are plain members
