"""The database at rest: encrypted on disk, opened only by its key, migrated step by step."""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import sqlcipher3

from storage.attachments import Attachment
from storage.database import Database
from storage.directory import DirectoryEntry
from storage.documents import DocumentCache
from storage.errors import DatabaseCorruptError, SchemaTooNewError, WrongKeyError
from storage.local_store import LocalStore
from storage.messages import MessageKind, MessageRef, MessageStore
from storage.migrations import LATEST, MIGRATIONS, Migration, migrate, schema_version
from storage.outbox import OutboundEnvelope
from storage.rooms import PatientContext, PatientIdentifier, RoomStore
from storage.settings import Settings
from storage.text import fold
from tests.storage_support import INS_OID, USER, open_store, patient_room, text


def fingerprint(path: Path) -> dict[str, str]:
    """SHA-256 of the database and of its WAL when there is one.

    The -shm file is left out: it is SQLite's shared-memory index of the WAL, holding no data,
    which every reader (even one with a wrong key) may rebuild or mark.
    """
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (path, Path(f"{path}-wal"))
        if p.exists()
    }


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    store, _ = open_store(tmp_path / "liaison.db")
    store.rooms.save(patient_room())
    store.close()
    return tmp_path / "liaison.db"


# -- encryption at rest ---------------------------------------------------------------------------
def forms(marker: str) -> set[bytes]:
    """Every way the marker's text could sit in a file: as typed, lowercased, folded (what the
    search index stores), in UTF-8 and UTF-16."""
    texts = {marker, marker.lower(), *fold(marker)}
    return {t.encode(enc) for t in texts for enc in ("utf-8", "utf-16-le", "utf-16-be")}


def leaks(files: list[Path], markers: list[str]) -> list[tuple[str, str]]:
    found = []
    for path in files:
        data = path.read_bytes() + path.name.encode()
        found += [(path.name, m) for m in markers for form in forms(m) if form in data]
    return found


def test_nothing_written_through_the_api_is_readable_on_disk(tmp_path: Path) -> None:
    tag = secrets.token_hex(4)
    markers = {
        name: f"{word}{tag}"
        for name, word in [("body", "Hémoglobinémie"), ("room", "Réanimation"),
                           ("ins", "Insmarqueur"), ("family", "Dupontél"), ("file", "Ordonnance"),
                           ("document", "Scanographie"), ("directory", "Hélèneannuaire"),
                           ("edit", "Kaliémiecorrigée"), ("setting", "Préférence")]
    }
    store, _ = open_store(tmp_path / "liaison.db")
    cache = DocumentCache(tmp_path / "documents")
    room = replace(patient_room(), name=f"Chambre 3 {markers['room']}", patient=PatientContext(
        identifiers=(PatientIdentifier(system=INS_OID, value=markers["ins"]),),
        family_name=markers["family"], given_names=("Zoé",)))
    store.rooms.save(room)
    staged = cache.encrypt(io.BytesIO(f"Compte rendu {markers['document']} ".encode() * 500))
    cache.promote(staged, "blob-1")
    attachment = Attachment(blob_id="blob-1", file_name=f"{markers['file']}.pdf",
                            media_type="application/pdf", key=staged.key)
    store.messages.add_incoming(replace(text("c1", f"Patient stable, {markers['body']} à 9"),
                                        kind=MessageKind.DOCUMENT, attachments=(attachment,)))
    for i in range(300):  # enough pages for the WAL to hold index and overflow pages too
        store.messages.add_incoming(text(f"filler-{i}", f"{markers['body']} contrôle n°{i}"))
    store.messages.edit(MessageRef("dev-alice-phone", "c1"), edit=MessageRef("d", "e"),
                        editor_user=USER, body=f"{markers['edit']} normale", at=9e9)
    store.directory.replace_all([DirectoryEntry(user_id="u1", display_name=markers["directory"],
                                                profession="nurse")])
    store.settings.set("last_room", markers["setting"])
    assert store.search.search(markers["body"]).hits  # really written and indexed

    wal = Path(f"{store.db.path}-wal")
    assert wal.stat().st_size > 0
    files = [store.db.path, wal, Path(f"{store.db.path}-shm"), *(tmp_path / "documents").rglob("*")]
    assert leaks([f for f in files if f.is_file()], list(markers.values())) == []
    store.db.checkpoint()
    store.close()
    files = [tmp_path / "liaison.db", *(tmp_path / "documents").rglob("*")]
    assert leaks([f for f in files if f.is_file()], list(markers.values())) == []
    # The scan itself works: the same markers are found in a plaintext copy.
    plain = tmp_path / "plain.txt"
    cache.export("blob-1", staged.key, plain)
    assert leaks([plain], [markers["document"]]) == [("plain.txt", markers["document"])]


def test_stdlib_sqlite_cannot_open_it(db_path: Path) -> None:
    with pytest.raises(sqlite3.DatabaseError, match="file is not a database"):
        sqlite3.connect(db_path).execute("SELECT * FROM sqlite_master").fetchall()


# -- keys and damaged files -----------------------------------------------------------------------
def test_wrong_key_fails_cleanly_and_changes_nothing(db_path: Path) -> None:
    store, key = open_store(db_path.parent / "live.db")
    store.rooms.save(patient_room())
    crashed = db_path.parent / "crashed.db"  # the files as a kill -9 leaves them: a hot WAL
    for suffix in ("", "-wal", "-shm"):
        shutil.copyfile(f"{store.db.path}{suffix}", f"{crashed}{suffix}")
    assert "crashed.db-wal" in fingerprint(crashed)
    for path in (db_path, store.db.path, crashed):
        before = fingerprint(path)
        with pytest.raises(WrongKeyError):
            Database.open(path, os.urandom(32))
        assert fingerprint(path) == before
    store.close()
    recovered = LocalStore.open(crashed, key)
    assert recovered.rooms.get("room-p1") == patient_room()
    recovered.close()


def test_files_that_are_not_liaison_databases(tmp_path: Path) -> None:
    key = os.urandom(32)
    text_file = tmp_path / "notes.txt"
    text_file.write_text("pas une base")
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.close()
    for path in (text_file, plain):
        with pytest.raises(DatabaseCorruptError):
            Database.open(path, key)
    # A page-aligned random file is indistinguishable from a database under another key.
    noise = tmp_path / "noise.db"
    noise.write_bytes(os.urandom(8192))
    with pytest.raises(WrongKeyError):
        Database.open(noise, key)
    with pytest.raises(FileNotFoundError):
        Database.open(tmp_path / "missing.db", key)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(ValueError):
        Database.open(tmp_path / "new.db", b"short", create=True)


def test_a_damaged_page_is_reported(db_path: Path, tmp_path: Path) -> None:
    store, key = open_store(tmp_path / "big.db")
    store.rooms.save(patient_room())
    for i in range(200):
        store.messages.add_incoming(text(f"c{i}", "Bilan du matin " * 20))
    assert store.db.integrity_problems() == []
    store.db.checkpoint()
    store.close()
    with (tmp_path / "big.db").open("r+b") as f:
        f.seek(4096 * 6 + 100)
        f.write(b"\x00" * 16)
    db = Database.open(tmp_path / "big.db", key)
    assert db.integrity_problems() != []
    db.close()


def test_connection_settings(db_path: Path) -> None:
    store, _ = open_store(db_path.parent / "settings.db")
    expected = {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1,
                "cache_size": -65536, "busy_timeout": 5000, "secure_delete": 1,
                "temp_store": 2, "cipher_log_level": "NONE"}
    actual = {name: store.db.execute(f"PRAGMA {name}").fetchone()[0] for name in expected}
    assert actual == expected
    store.close()


# -- transactions ---------------------------------------------------------------------------------
def count(db: Database) -> int:
    return int(db.execute("SELECT count(*) FROM settings").fetchone()[0])


def test_transactions_commit_roll_back_and_nest(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path / "t.db")
    db = store.db
    with db.transaction():
        store.settings.set("a", 1)
    with pytest.raises(RuntimeError), db.transaction():
        store.settings.set("b", 2)
        raise RuntimeError
    assert count(db) == 1
    with db.transaction():
        store.settings.set("c", 3)
        with pytest.raises(RuntimeError), db.transaction():
            store.settings.set("d", 4)
            raise RuntimeError
    assert store.settings.get("c") == 3 and store.settings.get("d") is None
    with pytest.raises(RuntimeError), db.transaction():
        with db.transaction():
            store.settings.set("e", 5)
        raise RuntimeError  # the outer rollback takes the released savepoint too
    assert count(db) == 2
    store.close()


def test_a_transaction_without_its_own_fsync_is_still_atomic_and_kept(tmp_path: Path) -> None:
    """``durable=False`` (outbox rows the relay accepted) lowers durability for that commit
    only: what follows is fully durable again, and a failure rolls it back all the same."""
    store, key = open_store(tmp_path / "lazy.db")
    db = store.db

    def synchronous() -> int:
        return int(db.execute("PRAGMA synchronous").fetchone()[0])

    with db.transaction(durable=False):
        assert synchronous() == 1  # NORMAL: no fsync at this commit
        store.settings.set("accepted", 1)
    assert synchronous() == 2
    with pytest.raises(RuntimeError), db.transaction(durable=False):
        store.settings.set("lost", 2)
        raise RuntimeError
    assert synchronous() == 2 and store.settings.get("lost") is None
    with db.transaction(), db.transaction(durable=False):  # nested: as durable as the outer
        assert synchronous() == 2
        store.settings.set("nested", 3)
    store.close()
    store, _ = open_store(tmp_path / "lazy.db", key)
    assert store.settings.get("accepted") == 1 and store.settings.get("nested") == 3
    store.close()


def test_a_database_stays_with_the_thread_that_opened_it(db_path: Path) -> None:
    store, _ = open_store(db_path.parent / "thread.db")
    errors: list[BaseException] = []

    def use() -> None:
        try:
            store.settings.get("x")
        except sqlcipher3.ProgrammingError as exc:
            errors.append(exc)

    worker = threading.Thread(target=use)
    worker.start()
    worker.join()
    assert len(errors) == 1
    store.close()


# -- migrations -----------------------------------------------------------------------------------
def seed_v1(db: Database) -> None:
    """Data as a v1 database holds it (written through repositories that v1 already had)."""
    RoomStore(db).save(patient_room())
    messages = MessageStore(db)
    messages.add_incoming(text("old-1", "Créatinine à 180, néphrologue prévenu", at=1.0))
    messages.add_incoming(text("old-2", "Hémoglobine stable", at=2.0))
    messages.recall(MessageRef("dev-alice-phone", "old-2"), recaller_user=USER, at=3.0)
    Settings(db).set("theme", "sombre")


def seed_v2(db: Database) -> None:
    """A message written once bodies are searchable."""
    MessageStore(db).add_incoming(text("old-3", "Kaliémie contrôlée", at=4.0))


def seed_v3(db: Database) -> None:
    """A message indexed the moment it was stored, as v3 did."""
    MessageStore(db).add_incoming(text("old-4", "Glycémie capillaire à 1,2 g/l", at=5.0))


def seed_v4(db: Database) -> None:
    """A message still in the outbox, as the relay has not taken it yet."""
    outgoing = replace(text("out-1", "Bilan demandé", at=7.0), server_ts=None)
    MessageStore(db).add_outgoing(
        outgoing, OutboundEnvelope(client_id="out-1", group_id=b"room-p1", frame=b"{}"))


SEEDS = {1: seed_v1, 2: seed_v2, 3: seed_v3, 4: seed_v4}


def test_every_version_has_a_seed() -> None:
    assert sorted(SEEDS) == list(range(1, LATEST))
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))


@pytest.mark.parametrize("version", range(1, LATEST))
def test_upgrade_from_every_earlier_version_keeps_data(tmp_path: Path, version: int) -> None:
    path, key = tmp_path / "old.db", os.urandom(32)
    db = Database.open(path, key, create=True)
    assert migrate(db, target=version) == version
    for v in range(1, version + 1):
        SEEDS[v](db)
    rows_before = db.execute("SELECT * FROM messages ORDER BY id").fetchall()
    db.close()

    store = LocalStore.open(path, key)
    assert schema_version(store.db) == LATEST
    assert store.db.execute("SELECT * FROM messages ORDER BY id").fetchall() == rows_before
    assert store.settings.get("theme") == "sombre"
    # v2: what v1 held is searchable, recalled text is not, and new writes are indexed.
    assert [h.ref.client_id for h in store.search.search("creatinine").hits] == ["old-1"]
    assert store.search.search("hemoglobine").hits == ()
    store.messages.add_incoming(text("new-1", "Créatinine normalisée", at=4.0))
    assert len(store.search.search("creatinine").hits) == 2
    # v5: what waited in the outbox still does, and leaves it when the relay takes it.
    if version >= 4:
        [waiting] = store.outbox.due(now=8.0)
        assert waiting.envelope.client_id == "out-1"
        assert [c for c, _ in store.messages.accepted([("out-1", 9.0)])] == ["out-1"]
        assert len(store.outbox) == 0
    # v4: what v3 indexed at once stays found, and takes part in the batches' upkeep.
    if version >= 3:
        assert [h.ref.client_id for h in store.search.search("glycemie").hits] == ["old-4"]
        store.messages.recall(MessageRef("dev-alice-phone", "old-4"), recaller_user=USER, at=6.0)
        assert store.search.search("glycemie").hits == ()
    assert store.db.integrity_problems() == []
    store.close()


def test_fresh_database_is_created_at_the_latest_version(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path / "new.db")
    assert schema_version(store.db) == LATEST
    assert migrate(store.db) == LATEST  # nothing left to do
    store.close()


def test_newer_schema_is_refused_untouched(db_path: Path) -> None:
    store, key = open_store(db_path.parent / "future.db")
    store.db.execute(f"PRAGMA user_version = {LATEST + 1}")
    store.db.checkpoint()
    store.close()
    before = fingerprint(db_path.parent / "future.db")
    with pytest.raises(SchemaTooNewError):
        LocalStore.open(db_path.parent / "future.db", key)
    assert fingerprint(db_path.parent / "future.db") == before


def test_a_failing_step_leaves_the_previous_version(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = Migration(LATEST + 1, "broken", ("CREATE TABLE half_done (x)", "NOT SQL"))
    monkeypatch.setattr("storage.migrations.MIGRATIONS", (*MIGRATIONS, broken))
    monkeypatch.setattr("storage.migrations.LATEST", LATEST + 1)
    store, _ = open_store(db_path.parent / "broken.db")
    with pytest.raises(sqlcipher3.OperationalError):
        migrate(store.db, target=LATEST + 1)
    assert schema_version(store.db) == LATEST
    assert store.db.execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0
    store.close()
