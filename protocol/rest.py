"""REST bodies (version 1). Binary fields travel as unpadded-or-padded base64url."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from protocol.encoding import B64

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Code6 = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Profession(StrEnum):
    PHYSICIAN = "physician"
    NURSE = "nurse"
    MIDWIFE = "midwife"
    PHARMACIST = "pharmacist"
    CARE_ASSISTANT = "care_assistant"
    PHYSIOTHERAPIST = "physiotherapist"
    SECRETARY = "secretary"
    ADMINISTRATIVE = "administrative"
    INTEGRATION = "integration"
    OTHER = "other"


class UserStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


# -- directory --------------------------------------------------------------------------------
class User(Model):
    """A directory entry: never a phone number."""

    id: Id
    display_name: Name
    profession: Profession
    specialty: str | None = None
    services: list[str] = []
    sites: list[str] = []
    rpps: str | None = None
    roles: list[str] = []
    status: UserStatus = UserStatus.ACTIVE


class DirectoryPage(Model):
    users: list[User]
    next_cursor: str | None = None


# -- enrollment and authentication -------------------------------------------------------------
class EnrollRequest(Model):
    invite_code: Annotated[str, StringConstraints(min_length=8, max_length=64)]
    device_name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    signature_key: B64 = Field(description="Ed25519 public key, 32 bytes")
    proof: B64 = Field(description="Ed25519 signature of the enrollment proof")
    totp: Code6 | None = Field(None, description="required when the user already has a device")


class EnrollResponse(Model):
    user_id: Id
    device_id: Id
    credential: B64 = Field(description="serialized MLS Credential, attested")
    organisation_key: B64
    organisation_name: str
    totp_uri: str | None = Field(None, description="otpauth:// URI, at first enrollment only")


class ChallengeRequest(Model):
    device_id: Id


class ChallengeResponse(Model):
    challenge: B64
    expires_in: int


class LoginRequest(Model):
    device_id: Id
    challenge: B64
    signature: B64


class TokenResponse(Model):
    token: str
    expires_in: int
    user_id: Id


class Device(Model):
    id: Id
    user_id: Id
    name: str
    signature_key: B64
    credential: B64
    created_at: datetime
    revoked: bool


class DeviceList(Model):
    devices: list[Device]


# -- key packages ------------------------------------------------------------------------------
class KeyPackageUpload(Model):
    key_packages: Annotated[list[B64], Field(max_length=500)] = []
    last_resort: B64 | None = None


class KeyPackageCount(Model):
    available: int
    last_resort: bool


class KeyPackageClaim(Model):
    device_ids: Annotated[list[Id], Field(min_length=1, max_length=100)]


class ClaimedKeyPackage(Model):
    device_id: Id
    user_id: Id
    key_package: B64
    last_resort: bool


class ClaimedKeyPackages(Model):
    key_packages: list[ClaimedKeyPackage]


# -- groups ------------------------------------------------------------------------------------
class GroupCreate(Model):
    group_id: B64 = Field(description="opaque MLS group id, at most 64 bytes")


class GroupInfo(Model):
    group_id: B64
    epoch: int
    members: list[Id]


# -- blobs -------------------------------------------------------------------------------------
class BlobCreate(Model):
    """A blob for the members of a group, or (``recipient_device``) for one device of the
    uploader's own user: exactly one of the two."""

    group_id: B64 | None = None
    size: Annotated[int, Field(ge=1)]
    sha256: B64
    recipient_device: Id | None = None


class BlobStatus(Model):
    blob_id: Id
    size: int
    stored: int
    complete: bool
    chunk_size: int


# -- device linking ----------------------------------------------------------------------------
LinkCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{4}[- ]?[A-Za-z0-9]{4}$")]


class LinkStart(Model):
    """A new device asks to be linked to the user who will approve its code."""

    device_name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    signature_key: B64 = Field(description="Ed25519 public key, 32 bytes")
    box_key: B64 = Field(description="X25519 public key the history is sealed to, 32 bytes")
    proof: B64 = Field(description="Ed25519 signature of the link proof over both keys")


class LinkStarted(Model):
    link_id: Annotated[str, StringConstraints(min_length=32, max_length=64)] = Field(
        description="secret to the new device: it polls the link with it")
    code: str = Field(description="short code the user types on an existing device")
    expires_in: int


class LinkApprove(Model):
    code: LinkCode
    totp: Code6


class LinkApproved(Model):
    """The device just created, for the approving UI to show, and its keys to seal to."""

    device: Device
    box_key: B64
    proof: B64


class LinkHistory(Model):
    """Where the new device finds its history: a device-addressed blob and its sealed key."""

    device_id: Id
    blob_id: Id
    sealed_key: B64 = Field(description="archive key, hash and signature, sealed to box_key")


class LinkStatus(Model):
    approved: bool
    enrollment: EnrollResponse | None = None
    approved_by: Id | None = None
    history: LinkHistory | None = None
