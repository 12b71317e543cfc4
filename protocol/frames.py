"""WebSocket frames (version 1): JSON objects discriminated by ``type``.

Device -> relay: ``send`` (application message or proposal), ``commit`` (with its Welcome and
declared membership change), ``ack`` (delivered mailbox entries).
Relay -> device: ``accepted``, ``refused``, ``deliver``, ``revoked``.

A WebSocket text message carries one frame, or several as a JSON array, in order: either side
sends together what it has ready at once, so that a burst costs one message's handling on
each side rather than one per frame. A malformed frame in an array costs only itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from protocol.encoding import B64
from protocol.problems import Problem
from protocol.rest import Id

ClientId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Kind(StrEnum):
    APPLICATION = "application"
    PROPOSAL = "proposal"
    COMMIT = "commit"
    WELCOME = "welcome"
    NOTICE = "notice"


class Send(Frame):
    """An application message or a proposal for every other member device."""

    type: Literal["send"] = "send"
    id: ClientId
    group_id: B64
    kind: Literal[Kind.APPLICATION, Kind.PROPOSAL] = Kind.APPLICATION
    payload: B64


class Commit(Frame):
    """A commit for ``epoch``; the relay accepts exactly one per epoch.

    The commit itself is encrypted, so the sender declares the device-level membership
    change in clear for routing; members verify the real change inside MLS.
    """

    type: Literal["commit"] = "commit"
    id: ClientId
    group_id: B64
    epoch: Annotated[int, Field(ge=0)]
    payload: B64
    welcome: B64 | None = None
    add_devices: Annotated[list[Id], Field(max_length=1000)] = []
    remove_devices: Annotated[list[Id], Field(max_length=1000)] = []


class Ack(Frame):
    """The device stored these mailbox entries: the relay may drop them."""

    type: Literal["ack"] = "ack"
    seqs: Annotated[list[int], Field(min_length=1, max_length=1000)]


ClientFrame = Annotated[Send | Commit | Ack, Field(discriminator="type")]
CLIENT_FRAME: TypeAdapter[Send | Commit | Ack] = TypeAdapter(ClientFrame)


class Accepted(Frame):
    """Stored durably; for a commit, ``epoch`` is the group's new epoch. ``sent_at`` is the
    envelope's time as every recipient gets it: the sender orders its own message by it too."""

    type: Literal["accepted"] = "accepted"
    id: ClientId
    epoch: int | None = None
    sent_at: float | None = None


class Refused(Frame):
    type: Literal["refused"] = "refused"
    id: str
    problem: Problem


class Envelope(Frame):
    id: str
    group_id: B64
    sender_device: Id | None
    kind: Kind
    epoch: int | None = None
    payload: B64
    sent_at: float


class Deliver(Frame):
    type: Literal["deliver"] = "deliver"
    seq: int
    envelope: Envelope


class Revoked(Frame):
    """This device was revoked: the relay closes the connection after this frame."""

    type: Literal["revoked"] = "revoked"


ServerFrame = Annotated[Accepted | Refused | Deliver | Revoked, Field(discriminator="type")]
SERVER_FRAME: TypeAdapter[Accepted | Refused | Deliver | Revoked] = TypeAdapter(ServerFrame)


# An array of frames stays under this many characters (every relay takes messages of 64 KiB
# at least: RelayConfig.max_frame_bytes); a larger frame travels alone.
BATCH_CHARS = 64 * 1024
MAX_BATCH_FRAMES = 1000

T = TypeVar("T")


def batched(texts: Iterable[str], limit: int = BATCH_CHARS) -> Iterator[str]:
    """Frames' texts as WebSocket messages: alone, or several as one JSON array."""
    batch: list[str] = []
    size = 1
    for text in texts:
        if batch and (size + len(text) + 1 > limit or len(batch) == MAX_BATCH_FRAMES):
            yield _message(batch)
            batch, size = [], 1
        batch.append(text)
        size += len(text) + 1
    if batch:
        yield _message(batch)


def _message(batch: list[str]) -> str:
    return batch[0] if len(batch) == 1 else "[" + ",".join(batch) + "]"


def parse(adapter: TypeAdapter[T], text: str | bytes) -> list[T | ValueError]:
    """The frames one WebSocket message carries, in order, each malformed one as its error in
    its place."""
    if text[:64].lstrip()[:1] not in ("[", b"["):
        try:
            return [adapter.validate_json(text)]
        except ValidationError as e:
            return [e]
    try:
        items = json.loads(text)
    except ValueError as e:
        return [e]
    if not 0 < len(items) <= MAX_BATCH_FRAMES:
        return [ValueError(f"an array carries 1 to {MAX_BATCH_FRAMES} frames")]
    frames: list[T | ValueError] = []
    for item in items:
        try:
            frames.append(adapter.validate_python(item))
        except ValidationError as e:
            frames.append(e)
    return frames
