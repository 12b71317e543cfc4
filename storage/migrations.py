"""The schema's history: numbered steps recorded in ``PRAGMA user_version``.

A step is never edited once released; a change is a new step. Each step runs in one
transaction together with its version bump (the header field is transactional), so a crash
leaves the database at the previous version or the next, never between.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database
from storage.errors import SchemaTooNewError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


_V1 = Migration(
    1,
    "initial schema: identity, MLS state, rooms, messages, outbox, directory, settings",
    (
        """CREATE TABLE account (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            device_name TEXT NOT NULL,
            relay_url TEXT NOT NULL,
            organisation_name TEXT NOT NULL,
            organisation_key BLOB NOT NULL,
            credential BLOB NOT NULL,
            signature_private_key BLOB NOT NULL,
            enrolled_at REAL NOT NULL
        ) STRICT""",
        """CREATE TABLE mls_groups (
            group_id BLOB PRIMARY KEY,
            epoch INTEGER NOT NULL CHECK (epoch >= 0),
            state BLOB NOT NULL
        ) STRICT""",
        """CREATE TABLE key_packages (
            ref BLOB PRIMARY KEY,
            private_parts BLOB NOT NULL,
            last_resort INTEGER NOT NULL CHECK (last_resort IN (0, 1)),
            created_at REAL NOT NULL
        ) STRICT""",
        """CREATE TABLE rooms (
            id TEXT PRIMARY KEY,
            group_id BLOB NOT NULL UNIQUE,
            kind TEXT NOT NULL
                CHECK (kind IN ('direct', 'group', 'service', 'patient', 'project')),
            name TEXT NOT NULL,
            patient TEXT,
            retention_days INTEGER CHECK (retention_days > 0),
            created_at REAL NOT NULL
        ) STRICT""",
        """CREATE TABLE room_members (
            room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'observer')),
            joined_at REAL NOT NULL,
            PRIMARY KEY (room_id, user_id)
        ) STRICT, WITHOUT ROWID""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
            sender_device TEXT NOT NULL,
            client_id TEXT NOT NULL,
            sender_user TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('text', 'document', 'system')),
            body TEXT,
            priority TEXT NOT NULL CHECK (priority IN ('normal', 'urgent')),
            status INTEGER NOT NULL CHECK (status BETWEEN 0 AND 4),
            reply_to_device TEXT,
            reply_to_client TEXT,
            server_ts REAL,
            local_ts REAL NOT NULL,
            sort_ts REAL GENERATED ALWAYS AS (coalesce(server_ts, local_ts)) VIRTUAL,
            edited_at REAL,
            recalled_at REAL,
            UNIQUE (sender_device, client_id)
        ) STRICT""",
        "CREATE INDEX messages_timeline ON messages (room_id, sort_ts, id)",
        """CREATE TABLE message_versions (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            edit_device TEXT NOT NULL,
            edit_client TEXT NOT NULL,
            body TEXT NOT NULL,
            at REAL NOT NULL,
            UNIQUE (edit_device, edit_client)
        ) STRICT""",
        "CREATE INDEX message_versions_message ON message_versions (message_id)",
        """CREATE TABLE receipts (
            message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            status INTEGER NOT NULL CHECK (status BETWEEN 2 AND 4),
            at REAL NOT NULL,
            PRIMARY KEY (message_id, user_id, status)
        ) STRICT, WITHOUT ROWID""",
        """CREATE TABLE attachments (
            message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            blob_id TEXT NOT NULL,
            file_name TEXT NOT NULL,
            media_type TEXT NOT NULL,
            document_key BLOB NOT NULL,
            ciphertext_sha256 BLOB NOT NULL,
            plaintext_size INTEGER NOT NULL,
            PRIMARY KEY (message_id, position)
        ) STRICT""",
        "CREATE INDEX attachments_blob ON attachments (blob_id)",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            client_id TEXT NOT NULL UNIQUE,
            group_id BLOB NOT NULL,
            frame BLOB NOT NULL,
            message_id INTEGER REFERENCES messages (id) ON DELETE CASCADE,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL
        ) STRICT""",
        "CREATE INDEX outbox_due ON outbox (next_attempt_at, id)",
        "CREATE INDEX outbox_message ON outbox (message_id)",
        """CREATE TABLE directory (
            user_id TEXT PRIMARY KEY,
            display_name TEXT NOT NULL,
            profession TEXT NOT NULL,
            specialty TEXT,
            services TEXT NOT NULL,
            sites TEXT NOT NULL,
            rpps TEXT,
            roles TEXT NOT NULL,
            active INTEGER NOT NULL CHECK (active IN (0, 1)),
            search_key TEXT NOT NULL
        ) STRICT""",
        """CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT, WITHOUT ROWID""",
    ),
)

# Message bodies become searchable. The index holds no copy of the text (external content:
# snippets are cut from ``messages``); triggers keep it in step with inserts, edits, recalls
# and purges, and FTS5's secure-delete removes a recalled body's tokens at once instead of
# leaving them in old segments until a merge. The rebuild indexes what v1 already held.
_V2 = Migration(
    2,
    "full-text search over message bodies (FTS5, accent- and case-insensitive)",
    (
        """CREATE VIRTUAL TABLE message_fts USING fts5 (
            body,
            content = 'messages',
            content_rowid = 'id',
            tokenize = 'unicode61 remove_diacritics 2'
        )""",
        "INSERT INTO message_fts (message_fts, rank) VALUES ('secure-delete', 1)",
        """CREATE TRIGGER message_fts_insert AFTER INSERT ON messages
        WHEN new.body IS NOT NULL BEGIN
            INSERT INTO message_fts (rowid, body) VALUES (new.id, new.body);
        END""",
        """CREATE TRIGGER message_fts_delete AFTER DELETE ON messages
        WHEN old.body IS NOT NULL BEGIN
            INSERT INTO message_fts (message_fts, rowid, body) VALUES ('delete', old.id, old.body);
        END""",
        """CREATE TRIGGER message_fts_update AFTER UPDATE OF body ON messages BEGIN
            INSERT INTO message_fts (message_fts, rowid, body)
                SELECT 'delete', old.id, old.body WHERE old.body IS NOT NULL;
            INSERT INTO message_fts (rowid, body)
                SELECT new.id, new.body WHERE new.body IS NOT NULL;
        END""",
        "INSERT INTO message_fts (message_fts) VALUES ('rebuild')",
    ),
)

# A message the relay refused for good (no longer a member, too large…) leaves the outbox
# instead of being resent forever, and shows as failed. Its own table, because widening the
# status column's CHECK would mean rebuilding ``messages`` with its search index and triggers.
_V3 = Migration(
    3,
    "messages the relay refused for good, with the reason",
    (
        """CREATE TABLE message_failures (
            message_id INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
            reason TEXT NOT NULL,
            at REAL NOT NULL
        ) STRICT""",
    ),
)

# Indexing a body in the same transaction that stores it made every commit write a new FTS5
# segment: about half of what storing a received message cost. A stored body now only queues
# its row id; ``MessageSearch.index_pending`` indexes the queue in one transaction (the engine
# every few seconds, and any search before it runs). A body leaving the table or changing
# (purge, recall, edit) is taken out of the index at once if it was indexed (secure-delete
# still applies), out of the queue otherwise: the index never holds a body the table lost.
_V4 = Migration(
    4,
    "message bodies are indexed for search in batches, not one commit at a time",
    (
        "CREATE TABLE message_fts_pending (message_id INTEGER PRIMARY KEY) STRICT",
        "DROP TRIGGER message_fts_insert",
        "DROP TRIGGER message_fts_delete",
        "DROP TRIGGER message_fts_update",
        """CREATE TRIGGER message_fts_insert AFTER INSERT ON messages
        WHEN new.body IS NOT NULL BEGIN
            INSERT INTO message_fts_pending (message_id) VALUES (new.id);
        END""",
        """CREATE TRIGGER message_fts_delete AFTER DELETE ON messages
        WHEN old.body IS NOT NULL BEGIN
            INSERT INTO message_fts (message_fts, rowid, body)
                SELECT 'delete', old.id, old.body WHERE NOT EXISTS
                    (SELECT 1 FROM message_fts_pending WHERE message_id = old.id);
            DELETE FROM message_fts_pending WHERE message_id = old.id;
        END""",
        """CREATE TRIGGER message_fts_update AFTER UPDATE OF body ON messages BEGIN
            INSERT INTO message_fts (message_fts, rowid, body)
                SELECT 'delete', old.id, old.body WHERE old.body IS NOT NULL AND NOT EXISTS
                    (SELECT 1 FROM message_fts_pending WHERE message_id = old.id);
            DELETE FROM message_fts_pending WHERE message_id = old.id;
            INSERT INTO message_fts_pending (message_id)
                SELECT new.id WHERE new.body IS NOT NULL;
        END""",
    ),
)

# The outbox holds what is in flight: a handful of rows online, a shift's messages at worst
# offline. Scanning it costs less than keeping two more b-trees at every send and every
# acceptance (each one more encrypted page per commit); client_id's own index stays.
_V5 = Migration(
    5,
    "the outbox keeps only its client id index",
    ("DROP INDEX outbox_due", "DROP INDEX outbox_message"),
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4, _V5)
LATEST = MIGRATIONS[-1].version


def schema_version(db: Database) -> int:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    return int(version)


def migrate(db: Database, *, target: int = LATEST) -> int:
    """Apply every step above the database's version up to ``target``; return the version.

    Raises SchemaTooNewError, touching nothing, when a newer build already migrated it.
    """
    current = schema_version(db)
    if current > LATEST:
        raise SchemaTooNewError(f"database schema v{current}, this build knows v{LATEST}")
    for step in MIGRATIONS:
        if current < step.version <= target:
            with db.transaction():
                # Re-read under the write lock: another process may have migrated meanwhile.
                if schema_version(db) < step.version:
                    for statement in step.statements:
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {step.version}")
            current = step.version
    return current
