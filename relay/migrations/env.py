"""Alembic environment: runs the relay's migrations on SQLite or PostgreSQL (async)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from relay.db import make_engine, metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = make_engine(context.config.get_main_option("sqlalchemy.url"))
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


asyncio.run(_main())
