"""The relay's data directory and its configuration (``relay.json``, validated by pydantic)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from relay.db import sqlite_url

CONFIG_FILE = "relay.json"
ORG_KEY_FILE = "organisation.key"
AUDIT_HEAD_FILE = "audit.head"
BLOB_DIR = "blobs"
LOG_DIR = "logs"


class RelayConfig(BaseModel):
    """Operator-tunable settings; every limit has a safe default."""

    model_config = ConfigDict(extra="forbid")

    organisation: str = Field(min_length=1, max_length=200)
    organisation_key: str = Field("", description="public key (base64url): checks audit heads")
    db_url: str | None = Field(None, description="SQLAlchemy async URL; default SQLite here")
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    message_ttl_days: float = Field(30.0, gt=0)
    token_ttl_seconds: int = Field(900, ge=60, le=86_400)
    challenge_ttl_seconds: int = Field(120, ge=10, le=3_600)
    invite_ttl_hours_default: float = Field(72.0, gt=0)
    max_frame_bytes: int = Field(4 * 1024 * 1024, ge=64 * 1024)
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=64 * 1024)
    blob_max_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    blob_chunk_bytes: int = Field(1024 * 1024, ge=16 * 1024)
    user_quota_bytes: int = Field(2 * 1024 * 1024 * 1024, ge=1024)
    incomplete_blob_ttl_hours: float = Field(24.0, gt=0)
    send_queue_limit: int = Field(5_000, ge=100, description="frames queued per connection")
    backlog_page: int = Field(200, ge=1, le=5_000)
    auth_failures_per_window: int = Field(10, ge=1)
    auth_failure_window_seconds: int = Field(300, ge=10)


class DataDir:
    """Where a relay keeps everything: config, database, wrapped organisation key, blobs."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def org_key_file(self) -> Path:
        return self.path / ORG_KEY_FILE

    @property
    def audit_head_file(self) -> Path:
        return self.path / AUDIT_HEAD_FILE

    @property
    def blob_dir(self) -> Path:
        return self.path / BLOB_DIR

    @property
    def log_dir(self) -> Path:
        return self.path / LOG_DIR

    def load_config(self) -> RelayConfig:
        if not self.config_file.exists():
            raise FileNotFoundError(f"{self.path} is not a relay data directory "
                                    f"(no {CONFIG_FILE}); run `liaison-relay init` first")
        return RelayConfig.model_validate_json(self.config_file.read_text("utf-8"))

    def save_config(self, config: RelayConfig) -> None:
        self.config_file.write_text(config.model_dump_json(indent=2) + "\n", "utf-8")

    def db_url(self, config: RelayConfig) -> str:
        return config.db_url or sqlite_url(self.path)
