"""The bridge's configuration file (JSON), maintained by an administrator.

It holds no patient data and no secret: how the bridge names itself in its ACKs, the
identifier systems to use when the feed leaves them out, and, per ward code (PV1-3.1), who
joins a new patient's room: the members of a service room (kept up to date in the app by the
ward's own managers) and/or a list of user ids.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConfigError(Exception):
    """The configuration file is missing or invalid; the message says where."""


class Ward(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    service_room: str | None = None  # a service room the bridge's account belongs to
    users: tuple[str, ...] = ()  # directory user ids, e.g. the ward's on-call pager account


class BridgeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    application: str = Field("LIAISON", description="MSH-3 of the ACKs")
    facility: str = Field("", description="MSH-4 of the ACKs")
    ipp_system: str | None = Field(
        None, description="identifier system of IPPs and visit numbers sent without an OID"
    )
    wards: dict[str, Ward] = {}
    previous_ward_leaves: bool = Field(
        True, description="on a transfer, the previous ward's team leaves the patient's room "
                          "(those of them the new team or the attending physicians include stay)"
    )

    @classmethod
    def load(cls, path: Path) -> BridgeConfig:
        try:
            return cls.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such configuration file") from None
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{path}: {where}: {first['msg']}") from None
