"""Bring a relay database to the newest schema with Alembic (same migrations for both engines).

Alembic takes a third of a second to load and run: an admin command on a database already at
the newest revision (``HEAD``) skips it after one query, so that `liaison-relay user add` and
`invite` answer quickly. A test checks ``HEAD`` against the migration scripts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncEngine

HEAD = "0002"  # the newest migration's revision (relay/migrations/versions)
_HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def upgrade(url: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), "head")


async def revision(engine: AsyncEngine) -> str | None:
    """The database's schema revision; None for a database Alembic never ran on."""
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))
                    ).scalar_one_or_none()
    except DBAPIError:  # no alembic_version table yet
        return None


async def upgrade_async(url: str, engine: AsyncEngine) -> None:
    """From inside an event loop, and only if needed (``engine``, the caller's, on ``url``,
    asks): Alembic's env runs its own loop, so it gets a thread."""
    if await revision(engine) != HEAD:
        await asyncio.to_thread(upgrade, url)
