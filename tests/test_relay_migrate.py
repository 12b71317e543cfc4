"""Admin commands bring an old relay database to the newest schema, and skip Alembic for one
already there (relay/migrate.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from relay import migrate
from relay.config import sqlite_url
from relay.db import make_engine


async def _revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return await migrate.revision(engine)
    finally:
        await engine.dispose()


async def _upgrade(url: str) -> None:
    engine = make_engine(url)
    try:
        await migrate.upgrade_async(url, engine)
    finally:
        await engine.dispose()


def _tables(data: Path) -> set[str]:
    with sqlite3.connect(data / "relay.db") as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_head_is_the_newest_migration(tmp_path):
    scripts = ScriptDirectory.from_config(migrate.alembic_config(sqlite_url(tmp_path)))
    assert scripts.get_current_head() == migrate.HEAD


def test_a_new_or_old_database_is_upgraded_and_a_current_one_left_alone(tmp_path, monkeypatch):
    ran: list[str] = []
    real_upgrade = migrate.upgrade
    monkeypatch.setattr(migrate, "upgrade", lambda url: (ran.append(url), real_upgrade(url)))
    fresh, old = tmp_path / "fresh", tmp_path / "old"
    fresh.mkdir()
    old.mkdir()
    assert asyncio.run(_revision(sqlite_url(fresh))) is None
    asyncio.run(_upgrade(sqlite_url(fresh)))
    assert asyncio.run(_revision(sqlite_url(fresh))) == migrate.HEAD

    command.upgrade(migrate.alembic_config(sqlite_url(old)), "0001")
    assert "device_links" not in _tables(old)
    asyncio.run(_upgrade(sqlite_url(old)))
    assert "device_links" in _tables(old)
    assert asyncio.run(_revision(sqlite_url(old))) == migrate.HEAD
    assert ran == [sqlite_url(fresh), sqlite_url(old)]

    # at HEAD, Alembic is not even loaded
    asyncio.run(_upgrade(sqlite_url(old)))
    assert ran == [sqlite_url(fresh), sqlite_url(old)]
