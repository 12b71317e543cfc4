"""The app's preferences on this device: theme and auto-lock delay (nothing secret, so a plain
JSON file in the profile directory; a bad file falls back to the defaults)."""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger("liaison.ui")

PREFERENCES_FILE = "preferences.json"
LOCK_CHOICES = (1, 2, 5, 10, 15, 30)  # minutes of inactivity before the app locks


class Theme(StrEnum):
    SYSTEM = "system"
    LIGHT = "light"
    DARK = "dark"


class Preferences(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    theme: Theme = Theme.SYSTEM
    lock_minutes: int = Field(5, ge=1, le=max(LOCK_CHOICES))

    @classmethod
    def load(cls, profile_dir: Path) -> Preferences:
        try:
            return cls.model_validate_json((profile_dir / PREFERENCES_FILE).read_bytes())
        except FileNotFoundError:
            return cls()
        except ValidationError as e:
            log.warning("preferences unreadable, defaults used: %s", e)
            return cls()

    def save(self, profile_dir: Path) -> None:
        path = profile_dir / PREFERENCES_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(self.model_dump_json(), "utf-8")
        temporary.replace(path)
