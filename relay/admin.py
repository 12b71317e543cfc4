"""What the ``liaison-relay`` administration commands do to the database.

Each command runs in one transaction with its audit records; the running relay notices
revocations within a second and cuts the device off.
"""

from __future__ import annotations

import json
import secrets
import time
import unicodedata
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from protocol import rest
from protocol.encoding import b64decode
from relay.audit import (
    AuditChain,
    VerifyResult,
    insert_rows,
    iter_records,
    verify,
    verify_head,
)
from relay.config import DataDir
from relay.db import devices, invites, lock_for_writing, make_engine, user_terms, users
from relay.ids import invite_hash, new_id
from relay.migrate import upgrade_async

INVITE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud on a ward


def fold(text: str) -> str:
    """Case- and accent-insensitive form: "Hélène" -> "helene"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def terms(text: str) -> set[str]:
    """Words a prefix search matches: every word of the folded text, and its hyphen parts."""
    words = set()
    for w in fold(text).replace("'", " ").split():
        words.add(w)
        words.update(p for p in w.split("-") if p)
    return words


@dataclass
class AdminTx:
    conn: AsyncConnection
    chain: AuditChain
    now: float = field(default_factory=time.time)
    events: list[tuple[float, str, str | None, str | None, str | None, dict[str, Any]]] = \
        field(default_factory=list)

    def audit(self, event: str, *, user_id: str | None = None, device_id: str | None = None,
              **details: Any) -> None:
        self.events.append((self.now, event, user_id, device_id, None,
                            {"by": "admin-cli", **details}))


@asynccontextmanager
async def admin_tx(data: DataDir) -> AsyncIterator[AdminTx]:
    config = data.load_config()
    url = data.db_url(config)
    engine = make_engine(url, synchronous=config.sqlite_synchronous, writer=True)
    try:
        await upgrade_async(url, engine)
        async with engine.begin() as conn:
            await lock_for_writing(conn)
            tx = AdminTx(conn, await AuditChain.load(conn))
            yield tx
            await insert_rows(conn, tx.chain.rows(tx.events))
    finally:
        await engine.dispose()


@asynccontextmanager
async def admin_read(data: DataDir) -> AsyncIterator[AsyncConnection]:
    """Read-only commands: a plain connection, so the running relay is never held up."""
    config = data.load_config()
    url = data.db_url(config)
    engine = make_engine(url, synchronous=config.sqlite_synchronous)
    try:
        await upgrade_async(url, engine)
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


async def write_user_terms(conn: AsyncConnection, user: rest.User) -> None:
    await conn.execute(delete(user_terms).where(user_terms.c.user_id == user.id))
    rows = [{"user_id": user.id, "kind": "name", "term": t} for t in terms(user.display_name)]
    rows += [{"user_id": user.id, "kind": "service", "term": fold(s)} for s in user.services]
    rows.append({"user_id": user.id, "kind": "profession", "term": user.profession.value})
    await conn.execute(insert(user_terms), rows)


async def save_user(tx: AdminTx, user: rest.User) -> str:
    """Insert or update (by id) a directory entry and its search terms."""
    values = {"display_name": user.display_name, "search_name": fold(user.display_name),
              "profession": user.profession.value, "specialty": user.specialty,
              "services": json.dumps(user.services), "sites": json.dumps(user.sites),
              "rpps": user.rpps, "roles": json.dumps(user.roles), "status": user.status.value}
    exists = (await tx.conn.execute(select(users.c.id).where(users.c.id == user.id))).first()
    if exists:
        await tx.conn.execute(update(users).where(users.c.id == user.id).values(**values))
        tx.audit("user_updated", user_id=user.id)
    else:
        await tx.conn.execute(insert(users).values(id=user.id, created_at=tx.now, **values))
        tx.audit("user_added", user_id=user.id)
    await write_user_terms(tx.conn, user)
    return user.id


async def add_user(data: DataDir, *, name: str, profession: str, specialty: str | None = None,
                   services: Sequence[str] = (), sites: Sequence[str] = (),
                   rpps: str | None = None, roles: Sequence[str] = ()) -> str:
    user = rest.User(id=new_id("u_"), display_name=name, profession=rest.Profession(profession),
                     specialty=specialty, services=list(services), sites=list(sites),
                     rpps=rpps, roles=list(roles))
    async with admin_tx(data) as tx:
        if rpps and (await tx.conn.execute(select(users.c.id).where(users.c.rpps == rpps))
                     ).first():
            raise ValueError(f"a user with RPPS {rpps} already exists")
        return await save_user(tx, user)


async def list_users(data: DataDir) -> list[dict[str, Any]]:
    async with admin_read(data) as conn:
        rows = (await conn.execute(select(users).order_by(users.c.display_name))).all()
        counts: dict[str, int] = {}
        for d in (await conn.execute(select(devices.c.user_id).where(
                devices.c.revoked_at.is_(None)))).all():
            counts[d.user_id] = counts.get(d.user_id, 0) + 1
    return [{"id": r.id, "name": r.display_name, "profession": r.profession,
             "services": json.loads(r.services), "rpps": r.rpps, "roles": json.loads(r.roles),
             "status": r.status, "devices": counts.get(r.id, 0)} for r in rows]


async def disable_user(data: DataDir, user_id: str) -> int:
    """Disable the user and revoke every device (the relay cuts them off)."""
    async with admin_tx(data) as tx:
        result = await tx.conn.execute(update(users).where(users.c.id == user_id)
                                       .values(status="disabled"))
        if result.rowcount == 0:
            raise ValueError(f"no user {user_id}")
        revoked = await tx.conn.execute(update(devices).where(
            devices.c.user_id == user_id, devices.c.revoked_at.is_(None)).values(
            revoked_at=tx.now))
        tx.audit("user_disabled", user_id=user_id, devices=revoked.rowcount)
        return revoked.rowcount


async def create_invite(data: DataDir, user_id: str, ttl_seconds: float) -> str:
    async with admin_tx(data) as tx:
        return await insert_invite(tx, user_id, ttl_seconds)


async def insert_invite(tx: AdminTx, user_id: str, ttl_seconds: float) -> str:
    """A one-time code, stored only as a hash; read aloud or typed on a phone."""
    code = "-".join("".join(secrets.choice(INVITE_ALPHABET) for _ in range(4))
                    for _ in range(4))
    row = (await tx.conn.execute(select(users.c.status).where(users.c.id == user_id))).first()
    if row is None:
        raise ValueError(f"no user {user_id}")
    if row.status != "active":
        raise ValueError(f"user {user_id} is disabled")
    await tx.conn.execute(insert(invites).values(
        code_hash=invite_hash(code), user_id=user_id, created_at=tx.now,
        expires_at=tx.now + ttl_seconds))
    tx.audit("invite_created", user_id=user_id, ttl_seconds=int(ttl_seconds))
    return code


async def list_devices(data: DataDir, user_id: str | None) -> list[dict[str, Any]]:
    async with admin_read(data) as conn:
        q = select(devices).order_by(devices.c.user_id, devices.c.created_at)
        if user_id:
            q = q.where(devices.c.user_id == user_id)
        rows = (await conn.execute(q)).all()
    return [{"id": r.id, "user_id": r.user_id, "name": r.name, "created_at": r.created_at,
             "revoked": r.revoked_at is not None} for r in rows]


async def revoke_device(data: DataDir, device_id: str) -> None:
    async with admin_tx(data) as tx:
        result = await tx.conn.execute(update(devices).where(
            devices.c.id == device_id, devices.c.revoked_at.is_(None)).values(
            revoked_at=tx.now))
        if result.rowcount == 0:
            raise ValueError(f"no active device {device_id}")
        tx.audit("device_revocation_requested", device_id=device_id)


async def verify_audit(data: DataDir) -> VerifyResult:
    config = data.load_config()
    async with admin_read(data) as conn:
        result = await verify(conn)
        if config.organisation_key:
            result = await verify_head(conn, data.audit_head_file,
                                       b64decode(config.organisation_key), result)
        return result


async def export_audit(data: DataDir, out: TextIO, since: str | None) -> int:
    start = None
    if since:
        dt = datetime.fromisoformat(since)
        start = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    n = 0
    async with admin_read(data) as conn:
        async for r in iter_records(conn, start):
            r["prev_hash"], r["hash"] = r["prev_hash"].hex(), r["hash"].hex()
            r["time"] = datetime.fromtimestamp(r["at"], UTC).isoformat()
            r["details"] = json.loads(r["details"])
            out.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n
