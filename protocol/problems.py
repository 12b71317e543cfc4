"""RFC 9457 problem details with a stable machine-readable ``code``."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Code(StrEnum):
    """Stable error codes: clients branch on these, never on the human text."""

    BAD_REQUEST = "bad_request"
    VALIDATION = "validation_failed"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    INVITE_INVALID = "invite_invalid"
    LINK_INVALID = "link_invalid"
    TOTP_REQUIRED = "totp_required"
    TOTP_INVALID = "totp_invalid"
    SIGNATURE_INVALID = "signature_invalid"
    CHALLENGE_INVALID = "challenge_invalid"
    DEVICE_REVOKED = "device_revoked"
    USER_DISABLED = "user_disabled"
    NO_KEY_PACKAGE = "no_key_package"
    KEY_PACKAGE_INVALID = "key_package_invalid"
    STALE_EPOCH = "stale_epoch"
    NOT_A_MEMBER = "not_a_member"
    GROUP_EXISTS = "group_exists"
    BLOB_INCOMPLETE = "blob_incomplete"
    BLOB_OFFSET = "blob_offset_mismatch"
    BLOB_HASH = "blob_hash_mismatch"
    QUOTA_EXCEEDED = "quota_exceeded"
    RANGE_INVALID = "range_not_satisfiable"
    INTERNAL = "internal_error"


class Problem(BaseModel):
    """``application/problem+json`` body; ``epoch`` is set on stale-epoch refusals."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    code: Code
    detail: str | None = None
    epoch: int | None = None
