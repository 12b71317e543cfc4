"""Bring a relay database to the newest schema with Alembic (same migrations for both engines)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

_HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def upgrade(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


async def upgrade_async(url: str) -> None:
    """From inside an event loop: Alembic's env runs its own loop, so give it a thread."""
    await asyncio.to_thread(upgrade, url)
