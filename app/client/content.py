"""What travels inside MLS: the plaintext of application messages and the room state.

Both are small JSON documents. They are only ever seen encrypted by the relay, so they may
carry what the relay must not learn (bodies, room names); models keep parsing strict, because
a member's device is as untrusted an input as the network.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from protocol.encoding import B64
from storage.members import RoomRole
from storage.rooms import PatientContext, RoomKind


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


# What may be shared, as sniffed from the file's first bytes (app/client/documents.py).
MediaType = Literal[
    "application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "image/tiff",
    "text/plain", "application/dicom",
]


class DocumentContent(_Model):
    """A shared document: the blob to fetch and what opens it (the secretstream key and the
    SHA-256 of the whole ciphertext). The file's name and type travel only here, encrypted;
    ``size`` is the plaintext's."""

    type: Literal["document"] = "document"
    blob: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    key: B64 = Field(min_length=32, max_length=32)
    sha256: B64 = Field(min_length=32, max_length=32)
    size: int = Field(ge=0)
    name: str = Field(min_length=1, max_length=255)
    media_type: MediaType
    caption: str | None = None


class EditContent(_Model):
    """A new text for one of the sender's user's messages; receivers keep the old one in the
    message's history."""

    type: Literal["edit"] = "edit"
    target: Reference
    body: str = Field(min_length=1)


class RecallContent(_Model):
    """Retracts one of the sender's user's messages: receivers erase it, leaving a tombstone."""

    type: Literal["recall"] = "recall"
    target: Reference


class ArchivedContent(_Model):
    """A member archived messages of the room to the patient's record: what (the messages and
    the record's resources), by whom (the sender) and when (the relay's time). A message
    rather than room state, so any member may archive and the room's history shows it."""

    type: Literal["archived"] = "archived"
    messages: list[Reference] = Field(min_length=1)
    documents: int = Field(ge=0)  # how many of them carried a document, sent as Binary
    identifier: str = Field(min_length=1, max_length=128)  # the export's, in urn:liaison:export
    document_reference: str = Field(min_length=1, max_length=256)  # "DocumentReference/{id}"
    communication: str = Field(min_length=1, max_length=256)


ApplicationContent = (
    TextContent | ReceiptContent | DocumentContent | EditContent | RecallContent | ArchivedContent
)
APPLICATION_CONTENT: TypeAdapter[ApplicationContent] = TypeAdapter(
    Annotated[ApplicationContent, Field(discriminator="type")]
)


class RoomState(_Model):
    """The room as every member agrees on it: the GroupContext's LIAISON_ROOM_STATE."""

    kind: RoomKind
    name: str
    roles: dict[str, RoomRole] = {}  # user id -> role; absent users are plain members
    patient: PatientContext | None = None  # the patient a patient room is about
    retention_days: int | None = Field(None, ge=1)  # None: kept until the user leaves
    archived: bool = False  # read-only for everyone (a discharged patient's room)
    # the room this one was opened again for, which its members could no longer read
    # (Engine.recreate_room): their devices then lead from the old room to this one
    replaces: str | None = None
