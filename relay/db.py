"""The relay's schema (SQLAlchemy Core) and engine setup; migrations live in relay/migrations.

What is stored: identifiers, public keys, sizes, times, and MLS ciphertext. Never a
message body, a file name, a room name or a patient identity (tests scan for them).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

metadata = MetaData()
# 64-bit keys on PostgreSQL; SQLite's INTEGER PRIMARY KEY is already 64-bit (the rowid).
BigId = BigInteger().with_variant(Integer, "sqlite")

users = Table(
    "users", metadata,
    Column("id", String(64), primary_key=True),
    Column("display_name", String(200), nullable=False),
    Column("search_name", String(200), nullable=False),
    Column("profession", String(32), nullable=False),
    Column("specialty", String(200)),
    Column("services", Text, nullable=False, default="[]"),
    Column("sites", Text, nullable=False, default="[]"),
    Column("rpps", String(32), unique=True),
    Column("roles", Text, nullable=False, default="[]"),
    Column("status", String(16), nullable=False, default="active"),
    Column("totp_secret", LargeBinary),  # sealed under a key derived from the org key
    Column("created_at", Float, nullable=False),
)

user_terms = Table(
    "user_terms", metadata,
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # name | service | profession
    Column("term", String(200), nullable=False),
    Index("ix_user_terms_term", "kind", "term"),
    Index("ix_user_terms_user", "user_id"),
)

invites = Table(
    "invites", metadata,
    Column("code_hash", LargeBinary(32), primary_key=True),
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float),
)

devices = Table(
    "devices", metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("signature_key", LargeBinary(32), nullable=False, unique=True),
    Column("credential", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    # set once the running relay has cut the device off (routing, notices, connection)
    Column("revocation_handled", Boolean, nullable=False, default=False),
    Index("ix_devices_user", "user_id"),
)

tokens = Table(
    "tokens", metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("device_id", String(64), ForeignKey("devices.id", ondelete="CASCADE"),
           nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_tokens_device", "device_id"),
)

challenges = Table(
    "challenges", metadata,
    Column("challenge", LargeBinary(32), primary_key=True),
    Column("device_id", String(64), nullable=False),
    Column("expires_at", Float, nullable=False),
)

key_packages = Table(
    "key_packages", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("device_id", String(64), ForeignKey("devices.id", ondelete="CASCADE"),
           nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("last_resort", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Index("ix_key_packages_device", "device_id", "last_resort"),
)

groups = Table(
    "groups", metadata,
    Column("id", LargeBinary(64), primary_key=True),
    Column("epoch", BigInteger, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(64), nullable=False),
)

group_members = Table(
    "group_members", metadata,
    Column("group_id", LargeBinary(64), ForeignKey("groups.id", ondelete="CASCADE"),
           primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Index("ix_group_members_device", "device_id"),
)

envelopes = Table(
    "envelopes", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("sender_device", String(64)),
    Column("client_id", String(64)),
    Column("group_id", LargeBinary(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("epoch", BigInteger),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    UniqueConstraint("sender_device", "client_id", name="uq_envelopes_client_id"),
    Index("ix_envelopes_expires", "expires_at"),
)

mailbox = Table(
    "mailbox", metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("device_id", String(64), nullable=False),
    Column("envelope_id", BigId, ForeignKey("envelopes.id", ondelete="CASCADE"),
           nullable=False),
    Index("ix_mailbox_device_seq", "device_id", "seq"),
    Index("ix_mailbox_envelope", "envelope_id"),
)

blobs = Table(
    "blobs", metadata,
    Column("id", String(64), primary_key=True),
    Column("group_id", LargeBinary(64)),  # readable by the group's members, or
    Column("recipient_device", String(64)),  # by this one device (a linked device's history)
    Column("uploader_user", String(64), nullable=False),
    Column("uploader_device", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", LargeBinary(32), nullable=False),
    Column("stored", BigInteger, nullable=False, default=0),
    Column("complete", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("completed_at", Float),
    Index("ix_blobs_group", "group_id"),
    Index("ix_blobs_uploader", "uploader_user"),
)

# A device asking to be linked to a user; the user approves its short code with TOTP on an
# existing device. Only hashes of the link id (the new device's poll secret) and of the code.
device_links = Table(
    "device_links", metadata,
    Column("id_hash", LargeBinary(32), primary_key=True),
    Column("code_hash", LargeBinary(32), nullable=False, unique=True),
    Column("device_name", String(100), nullable=False),
    Column("signature_key", LargeBinary(32), nullable=False),
    Column("box_key", LargeBinary(32), nullable=False),
    Column("proof", LargeBinary(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("device_id", String(64)),  # set once approved
    Column("approved_by", String(64)),
    Column("history_blob", String(64)),
    Column("history_key", LargeBinary),  # sealed to box_key: opaque to the relay
    Index("ix_device_links_device", "device_id"),
)

audit = Table(
    "audit", metadata,
    Column("seq", BigId, primary_key=True, autoincrement=False),
    Column("at", Float, nullable=False),
    Column("event", String(32), nullable=False),
    Column("user_id", String(64)),
    Column("device_id", String(64)),
    Column("group_id", String(128)),
    Column("details", Text, nullable=False),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
)


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'relay.db'}"


def make_engine(url: str, *, synchronous: str = "FULL", writer: bool = False) -> AsyncEngine:
    """An engine with the SQLite pragmas the relay relies on (WAL, foreign keys).

    ``writer`` engines start every SQLite transaction with BEGIN IMMEDIATE, so the relay's
    writer and the admin CLI serialise cleanly instead of failing on a stale snapshot.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            if writer:
                dbapi_conn.isolation_level = None

        if writer:
            @event.listens_for(engine.sync_engine, "begin")
            def _begin(conn) -> None:  # type: ignore[no-untyped-def]
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10)


async def lock_for_writing(conn: AsyncConnection) -> None:
    """On PostgreSQL, writers (relay and CLI) take one advisory lock per transaction."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(727170)"))
