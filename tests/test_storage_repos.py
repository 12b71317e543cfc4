"""Repositories on a real SQLCipher file: identity, MLS state, rooms, messages, outbox, cache."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlcipher3

from crypto.document import DocumentKey
from crypto.errors import DecryptError
from storage.accounts import Account
from storage.attachments import Attachment
from storage.directory import DirectoryEntry
from storage.documents import DocumentCache
from storage.errors import NotSenderError
from storage.groups import GroupRecord
from storage.local_store import LocalStore
from storage.members import Member, RoomRole
from storage.messages import Message, MessageKind, MessageRef, Priority
from storage.outbox import OutboundEnvelope
from storage.receipts import Receipt
from storage.rooms import RoomKind
from storage.status import MessageStatus
from tests.storage_support import DEVICE, INS_OID, USER, open_store, patient_room, text


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    s, _ = open_store(tmp_path / "liaison.db")
    s.rooms.save(patient_room())
    yield s
    s.close()


def cached(store: LocalStore, ref: MessageRef) -> Message:
    message = store.messages.get(ref)
    assert message is not None
    return message


def status(store: LocalStore, ref: MessageRef) -> MessageStatus:
    return cached(store, ref).status


def envelope(client_id: str) -> OutboundEnvelope:
    return OutboundEnvelope(client_id=client_id, group_id=b"room-p1", frame=b"{ciphertext}")


# -- identity, MLS state, key packages -----------------------------------------------------------
def test_account_is_stored_once_with_its_private_key(tmp_path: Path) -> None:
    s, key = open_store(tmp_path / "a.db")
    account = Account(
        user_id=USER, device_id=DEVICE, device_name="Pixel de garde", relay_url="https://relay",
        organisation_name="CHU Exemple", organisation_key=b"\x01" * 32, credential=b"cred",
        signature_private_key=b"\x02" * 32, enrolled_at=1.0,
    )
    assert s.account.get() is None
    s.account.enrol(account)
    with pytest.raises(ValueError):
        s.account.enrol(replace(account, user_id="u-other"))
    assert "signature_private_key=" not in repr(account)
    s.close()
    s = LocalStore.open(tmp_path / "a.db", key)
    assert s.account.get() == account
    s.close()


def test_group_state_never_goes_back_an_epoch(store: LocalStore) -> None:
    store.groups.save(GroupRecord(b"g1", 3, b"state-3"))
    store.groups.save(GroupRecord(b"g1", 3, b"state-3-ratcheted"))
    store.groups.save(GroupRecord(b"g1", 4, b"state-4"))
    with pytest.raises(ValueError):
        store.groups.save(GroupRecord(b"g1", 2, b"old"))
    assert store.groups.load(b"g1") == GroupRecord(b"g1", 4, b"state-4")
    assert store.groups.group_ids() == [b"g1"]
    store.groups.delete(b"g1")
    assert store.groups.load(b"g1") is None


def test_one_time_key_packages_are_consumed_last_resort_kept(store: LocalStore) -> None:
    store.key_packages.add(b"ref-1", b"priv-1", created_at=1.0)
    store.key_packages.add(b"ref-lr", b"priv-lr", created_at=1.0, last_resort=True)
    assert store.key_packages.one_time_count() == 1
    assert store.key_packages.take(b"ref-1") == b"priv-1"
    assert store.key_packages.take(b"ref-1") is None
    assert store.key_packages.take(b"ref-lr") == b"priv-lr"
    assert store.key_packages.take(b"ref-lr") == b"priv-lr"
    assert store.key_packages.one_time_count() == 0


# -- rooms and members ----------------------------------------------------------------------------
def test_room_keeps_patient_context_and_takes_new_state(store: LocalStore) -> None:
    room = patient_room()
    assert store.rooms.get("room-p1") == room
    assert store.rooms.by_group(b"room-p1") == room
    assert room.patient is not None and room.patient.identifiers[0].system == INS_OID
    renamed = replace(room, name="Chambre 14 — M. Dupont", retention_days=None)
    store.rooms.save(renamed)
    assert store.rooms.get("room-p1") == renamed
    service = replace(room, id="room-s", group_id=b"s", kind=RoomKind.SERVICE, name="Cardiologie",
                      patient=None)
    store.rooms.save(service)
    assert store.rooms.all(RoomKind.SERVICE) == [service]
    assert [r.id for r in store.rooms.all()] == ["room-s", "room-p1"]


def test_a_room_read_again_after_a_rolled_back_save_is_the_stored_one(
    store: LocalStore,
) -> None:
    room = patient_room()
    assert store.rooms.get("room-p1") == room  # read, so kept in memory
    renamed = replace(room, name="Chambre 14 — M. Dupont")
    with pytest.raises(RuntimeError), store.db.transaction():
        store.rooms.save(renamed)
        assert store.rooms.get("room-p1") == renamed  # inside: the new state
        assert store.rooms.by_group(b"room-p1") == renamed
        raise RuntimeError("the commit failed")
    assert store.rooms.get("room-p1") == room
    assert store.rooms.by_group(b"room-p1") == room
    store.rooms.delete("room-p1")
    assert store.rooms.get("room-p1") is None and store.rooms.by_group(b"room-p1") is None


def test_members_and_per_room_roles(store: LocalStore) -> None:
    members = [
        Member(room_id="room-p1", user_id=USER, role=RoomRole.OWNER, joined_at=1.0),
        Member(room_id="room-p1", user_id="u-zoe", role=RoomRole.OBSERVER, joined_at=2.0),
    ]
    store.members.replace("room-p1", members)
    assert store.members.of_room("room-p1") == members
    assert store.members.role("room-p1", "u-zoe") is RoomRole.OBSERVER
    store.members.replace("room-p1", members[:1])
    assert store.members.role("room-p1", "u-zoe") is None
    with pytest.raises(ValueError):
        store.members.replace("room-other", members)


def test_deleting_a_room_deletes_its_messages(store: LocalStore) -> None:
    store.messages.add_incoming(text("c1", "Bonjour"))
    store.members.replace("room-p1", [Member(room_id="room-p1", user_id=USER,
                                             role=RoomRole.MEMBER, joined_at=1.0)])
    store.rooms.delete("room-p1")
    assert store.messages.get(MessageRef(DEVICE, "c1")) is None
    assert store.members.of_room("room-p1") == []


# -- messages -------------------------------------------------------------------------------------
def test_a_redelivered_message_is_cached_once(store: LocalStore) -> None:
    first = store.messages.add_incoming(text("c1", "Patient transféré en réa"))
    assert first is not None and first.status is MessageStatus.DELIVERED
    assert store.messages.add_incoming(text("c1", "Patient transféré en réa")) is None
    assert store.messages.get(MessageRef(DEVICE, "c1")) == first
    (count,) = store.db.execute("SELECT count(*) FROM messages").fetchone()
    assert count == 1
    # The same client id from another device is another message.
    assert store.messages.add_incoming(text("c1", "Autre", device="dev-bob")) is not None


def test_outgoing_message_and_outbox_row_are_written_together(store: LocalStore) -> None:
    message = replace(text("c1", "Bilan à 14 h"), priority=Priority.URGENT, server_ts=None,
                      reply_to=MessageRef("dev-bob", "question-1"))
    stored = store.messages.add_outgoing(message, envelope("c1"))
    assert stored.status is MessageStatus.PENDING
    assert cached(store, message.ref) == stored
    [entry] = store.outbox.due(now=message.local_ts)
    assert entry.message_id == stored.id and entry.envelope == envelope("c1")
    # An outbox row that cannot be written (its client id is taken) takes the message with it.
    store.outbox.enqueue(envelope("c2"), now=1.0)
    with pytest.raises(sqlcipher3.IntegrityError):
        store.messages.add_outgoing(text("c2", "Doublon"), envelope("c2"))
    assert store.messages.get(MessageRef(DEVICE, "c2")) is None
    with pytest.raises(ValueError):
        store.messages.add_outgoing(text("c3", "x"), envelope("c4"))


def test_pending_messages_of_a_burst_stay_after_the_ones_the_relay_took(store: LocalStore
                                                                        ) -> None:
    def pending(client_id: str, at: float) -> None:
        message = replace(text(client_id, client_id, at=at), server_ts=None)
        store.messages.add_outgoing(message, envelope(client_id))

    pending("old", 100.0)  # written long before: a backlog, left where it is
    store.messages.add_incoming(text("theirs", "theirs", at=1_000.0, device="dev-bob"))
    pending("first", 1_000.5)
    pending("second", 1_000.6)
    pending("third", 1_000.7)
    store.messages.accepted([("first", 1_000.9)])  # taken after the rest
    order = [m.ref.client_id for m in store.messages.latest("room-p1", limit=10)]
    assert order == ["old", "theirs", "first", "second", "third"]
    pending("fourth", 1_000.8)
    # accepted together (one batch of frames): the relay's order, the pending one after them
    taken = store.messages.accepted([("third", 1_001.0), ("second", 1_001.1),
                                     ("unknown", 1_001.2)])
    assert taken == [("third", "room-p1"), ("second", "room-p1")]
    order = [m.ref.client_id for m in store.messages.latest("room-p1", limit=10)]
    assert order == ["old", "theirs", "first", "third", "second", "fourth"]


def test_outbox_accepts_retries_and_marks_sent(store: LocalStore) -> None:
    stored = store.messages.add_outgoing(text("c1", "Bonjour", at=10.0), envelope("c1"))
    store.outbox.enqueue(envelope("receipt-1"), now=11.0)
    store.outbox.retry_later("c1", at=20.0, error="connection reset")
    assert [e.envelope.client_id for e in store.outbox.due(now=15.0)] == ["receipt-1"]
    [retried, _] = store.outbox.due(now=20.0)
    assert retried.attempts == 1 and retried.last_error == "connection reset"
    assert store.messages.accepted([("c1", 21.0)]) == [("c1", "room-p1")]
    assert store.messages.accepted([("c1", 21.0)]) == []  # accepted once
    assert status(store, stored.ref) is MessageStatus.SENT
    assert store.messages.get(stored.ref).server_ts == 21.0  # type: ignore[union-attr]
    assert len(store.outbox) == 1
    assert store.messages.accepted([("receipt-1", 22.0)]) == [("receipt-1", None)]
    assert len(store.outbox) == 0


def test_timeline_is_paged_back_from_the_newest(store: LocalStore) -> None:
    for i in range(120):
        store.messages.add_incoming(text(f"c{i:03}", f"message {i}", at=1000.0 + i // 2))
    store.rooms.save(replace(patient_room(), id="room-s", group_id=b"s"))
    store.messages.add_incoming(text("other", "ailleurs", room_id="room-s", at=5000.0))
    # Pages of 51 then 50 split pairs of messages sharing a timestamp: the id breaks ties.
    page = store.messages.latest("room-p1", limit=51)
    assert [m.body for m in page] == [f"message {i}" for i in range(69, 120)]
    older = store.messages.latest("room-p1", limit=50, before=page[0])
    assert [m.body for m in older] == [f"message {i}" for i in range(19, 69)]
    oldest = store.messages.latest("room-p1", limit=50, before=older[0])
    assert [m.body for m in oldest] == [f"message {i}" for i in range(19)]


def test_pending_message_sorts_by_local_time_until_stamped(store: LocalStore) -> None:
    store.messages.add_incoming(text("a", "reçu", at=100.0))
    store.messages.add_outgoing(replace(text("b", "envoyé", at=50.0), server_ts=None),
                                envelope("b"))
    assert [m.body for m in store.messages.latest("room-p1")] == ["envoyé", "reçu"]


def test_status_only_moves_forward(store: LocalStore) -> None:
    ref = store.messages.add_outgoing(text("c1", "Urgent : K+ 6,8", at=1.0), envelope("c1")).ref
    receipts = [Receipt("u-zoe", MessageStatus.ACKNOWLEDGED, 5.0),
                Receipt("u-bob", MessageStatus.DELIVERED, 3.0)]
    assert all(store.receipts.add(ref, r) for r in receipts)
    assert not store.receipts.add(ref, receipts[0])
    # a late "accepted" does not undo "acknowledged"
    assert store.messages.accepted([("c1", 7.0)]) == [("c1", "room-p1")]
    assert status(store, ref) is MessageStatus.ACKNOWLEDGED
    assert store.receipts.of_message(ref) == sorted(receipts, key=lambda r: r.at)
    assert not store.receipts.add(MessageRef("dev-x", "unknown"), receipts[0])
    with pytest.raises(ValueError):
        store.receipts.add(ref, Receipt("u-zoe", MessageStatus.SENT, 6.0))
    assert not store.messages.advance_status(ref, MessageStatus.READ)
    assert not store.messages.advance_status(MessageRef("dev-x", "unknown"), MessageStatus.READ)


def test_a_receipt_finds_its_messages_by_index_whatever_the_cache_holds(
        store: LocalStore) -> None:
    """A receipt for a burst is looked up through the (sender device, id) index, not by
    reading every cached message: the work SQLite does (counted in virtual machine steps,
    not timed) stays that of a few lookups with 3,000 messages cached."""
    refs = [store.messages.add_incoming(text(f"c{i}", f"message {i}", at=float(i))).ref
            for i in range(3000)]
    steps = []
    store.db._connection.set_progress_handler(lambda: steps.append(1) and 0, 100)
    try:
        recorded = store.receipts.add_to_own(refs[-10:], Receipt("u-bob", MessageStatus.READ,
                                                                 5.0),
                                             room_id="room-p1", sender_user=USER)
    finally:
        store.db._connection.set_progress_handler(None, 100)
    assert recorded == refs[-10:]
    assert len(steps) < 100  # a scan of the messages takes thousands


def test_a_receipt_moves_only_its_senders_messages_of_its_room(store: LocalStore) -> None:
    mine = store.messages.add_outgoing(text("m1", "à moi", at=1.0), envelope("m1")).ref
    theirs = store.messages.add_incoming(
        text("t1", "de Zoé", at=2.0, device="dev-zoe", user="u-zoe")).ref
    store.rooms.save(replace(patient_room(), id="room-s", group_id=b"s"))
    elsewhere = store.messages.add_incoming(text("m2", "ailleurs", room_id="room-s", at=3.0)).ref
    read = Receipt("u-bob", MessageStatus.READ, 5.0)
    refs = [mine, theirs, elsewhere, MessageRef("dev-x", "unknown")]
    assert store.receipts.add_to_own(refs, read, room_id="room-p1", sender_user=USER) == [mine]
    assert status(store, mine) is MessageStatus.READ
    assert status(store, theirs) is status(store, elsewhere) is MessageStatus.DELIVERED
    assert store.receipts.of_message(theirs) == store.receipts.of_message(elsewhere) == []
    assert store.receipts.add_to_own(refs, read, room_id="room-p1", sender_user=USER) == []


def test_edits_keep_their_history_in_time_order(store: LocalStore) -> None:
    ref = MessageRef(DEVICE, "c1")
    store.messages.add_incoming(text("c1", "Lasilix 40 mg", at=100.0))

    def edit(client: str, body: str, at: float) -> bool:
        return store.messages.edit(ref, edit=MessageRef(DEVICE, client), editor_user=USER,
                                   body=body, at=at)

    assert edit("e2", "Lasilix 80 mg", 300.0)
    assert not edit("e2", "Lasilix 80 mg", 300.0)  # redelivered
    assert edit("e1", "Lasilix 60 mg", 200.0)  # arrives late: history only
    shown = store.messages.get(ref)
    assert shown is not None and shown.body == "Lasilix 80 mg" and shown.edited_at == 300.0
    assert [(v.body, v.at) for v in store.messages.versions(ref)] == [
        ("Lasilix 40 mg", 100.0), ("Lasilix 60 mg", 200.0)]
    with pytest.raises(NotSenderError):
        store.messages.edit(ref, edit=MessageRef("dev-bob", "e3"), editor_user="u-bob",
                            body="piraté", at=400.0)
    assert not store.messages.edit(MessageRef(DEVICE, "nope"), edit=MessageRef(DEVICE, "e4"),
                                   editor_user=USER, body="x", at=1.0)


def test_recall_erases_text_history_attachments_and_unsent_frame(
    store: LocalStore, tmp_path: Path
) -> None:
    cache = DocumentCache(tmp_path / "documents")
    staged = cache.encrypt(io.BytesIO(b"compte rendu"))
    cache.promote(staged, "blob-1")
    attachment = Attachment(blob_id="blob-1", file_name="cr.pdf", media_type="application/pdf",
                            key=staged.key)
    message = replace(text("c1", "Mauvais patient", at=10.0), kind=MessageKind.DOCUMENT,
                      attachments=(attachment,), server_ts=None)
    ref = store.messages.add_outgoing(message, envelope("c1")).ref
    assert cached(store, ref).attachments == (attachment,)
    store.messages.edit(ref, edit=MessageRef(DEVICE, "e1"), editor_user=USER, body="Toujours",
                        at=20.0)
    with pytest.raises(NotSenderError):
        store.messages.recall(ref, recaller_user="u-bob", at=30.0)
    assert store.messages.recall(ref, recaller_user=USER, at=30.0)
    assert not store.messages.recall(ref, recaller_user=USER, at=31.0)
    tombstone = store.messages.get(ref)
    assert tombstone is not None
    assert (tombstone.body, tombstone.recalled_at, tombstone.attachments) == (None, 30.0, ())
    assert store.messages.versions(ref) == []
    assert len(store.outbox) == 0  # never sent
    assert store.attachments.unreferenced(cache.blob_ids()) == {"blob-1"}
    (bodies,) = store.db.execute(
        "SELECT count(*) FROM messages WHERE body LIKE '%patient%'").fetchone()
    assert bodies == 0


def test_a_rooms_documents_come_newest_first_among_many_texts(store: LocalStore) -> None:
    def document(client_id: str, file_name: str, at: float, room_id: str = "room-p1") -> Message:
        attachment = Attachment(blob_id=f"blob-{client_id}", file_name=file_name,
                                media_type="application/pdf",
                                key=DocumentKey(bytes(32), bytes(32), 1024))
        stored = store.messages.add_incoming(replace(
            text(client_id, None, room_id=room_id, at=at), kind=MessageKind.DOCUMENT,
            attachments=(attachment,)))
        assert stored is not None
        return stored

    store.rooms.save(replace(patient_room(), id="room-s", group_id=b"s"))
    for i in range(1500):
        store.messages.add_incoming(text(f"t{i:04}", f"message {i}", at=1000.0 + i))
    document("d1", "ecg.pdf", at=1100.5)
    document("d2", "bilan.pdf", at=1800.5)
    recalled = document("d3", "mauvais-patient.pdf", at=1900.5)
    store.messages.recall(recalled.ref, recaller_user=USER, at=2000.0)
    document("d4", "cr-operatoire.pdf", at=2400.5)
    document("elsewhere", "autre-chambre.pdf", at=3000.0, room_id="room-s")

    found = store.messages.documents("room-p1")
    assert [m.attachments[0].file_name for m in found] == [
        "cr-operatoire.pdf", "bilan.pdf", "ecg.pdf"]
    assert {m.kind for m in found} == {MessageKind.DOCUMENT}
    assert [m.attachments[0].file_name for m in store.messages.documents("room-p1", limit=2)] \
        == ["cr-operatoire.pdf", "bilan.pdf"]
    assert store.messages.documents("room-empty") == []


def test_retention_purges_old_messages_but_not_unsent_ones(store: LocalStore) -> None:
    day = 86400.0
    store.messages.add_incoming(text("old", "ancien", at=0.0))
    store.messages.add_incoming(text("new", "récent", at=25 * day))
    store.messages.add_outgoing(replace(text("unsent", "en attente", at=0.0), server_ts=None),
                                envelope("unsent"))
    assert store.messages.purge_expired(now=31 * day) == 1
    assert [m.body for m in store.messages.latest("room-p1")] == ["en attente", "récent"]


# -- directory, settings --------------------------------------------------------------------------
def test_directory_prefix_search_ignores_case_and_accents(store: LocalStore) -> None:
    entries = [
        DirectoryEntry(user_id="u1", display_name="Hélène Dubois", profession="nurse",
                       services=("Cardiologie",), rpps="10000000011"),
        DirectoryEntry(user_id="u2", display_name="Jean-Pierre Martin", profession="physician",
                       specialty="réanimation", services=("Réanimation",)),
        DirectoryEntry(user_id="u3", display_name="Élodie Lefèvre", profession="physician",
                       services=("Cardiologie", "Urgences"), active=False),
    ]
    store.directory.replace_all(entries)
    assert store.directory.get("u1") == entries[0]
    assert store.directory.search("HEL dub") == [entries[0]]
    assert store.directory.search("pierre") == [entries[1]]
    assert store.directory.search("reanim") == [entries[1]]
    assert store.directory.search("cardio") == [entries[0]]  # u3 is disabled
    assert store.directory.search("ubois") == []  # prefixes only
    assert store.directory.search("%") == []
    store.directory.replace_all(entries[1:])
    assert store.directory.get("u1") is None


def test_settings_hold_json_values(store: LocalStore) -> None:
    assert store.settings.get("muted", []) == []
    store.settings.set("muted", ["room-p1"])
    store.settings.set("muted", ["room-p1", "room-s"])
    assert store.settings.get("muted") == ["room-p1", "room-s"]
    store.settings.delete("muted")
    assert store.settings.get("muted") is None


def test_settings_read_once_are_kept_until_changed_or_rolled_back(store: LocalStore) -> None:
    """The engine asks a setting for every message sent: it is read from the database once,
    and a change, a deletion or a rollback is never hidden by what was kept."""
    statements: list[str] = []
    store.db._connection.set_trace_callback(statements.append)
    try:
        assert store.settings.get("room_reopened:r1") is None
        assert store.settings.get("room_reopened:r1") is None
        assert len([s for s in statements if "FROM settings" in s]) == 1  # a missing key too

        store.settings.set("muted", ["room-p1"])
        mine = store.settings.get("muted")
        assert isinstance(mine, list)
        mine.append("changed by the caller")
        assert store.settings.get("muted") == ["room-p1"]

        with pytest.raises(RuntimeError), store.db.transaction():
            store.settings.set("muted", ["room-s"])
            assert store.settings.get("muted") == ["room-s"]
            raise RuntimeError("the transaction fails")
        assert store.settings.get("muted") == ["room-p1"]  # the rollback undid the set
        store.settings.delete("muted")
        assert store.settings.get("muted") is None
    finally:
        store.db._connection.set_trace_callback(None)


# -- document cache -------------------------------------------------------------------------------
def test_document_cache_round_trip_export_and_cleanup(tmp_path: Path) -> None:
    cache = DocumentCache(tmp_path / "documents")
    content = os.urandom(200_000)
    staged = cache.encrypt(io.BytesIO(content))
    with cache.open_staged(staged) as f:
        ciphertext = f.read()
    cache.promote(staged, "blob-sent")
    cache.store("blob-received", [ciphertext[:1000], ciphertext[1000:]],
                staged.key.ciphertext_sha256)
    assert cache.blob_ids() == {"blob-sent", "blob-received"} and "blob-sent" in cache
    assert b"".join(cache.read("blob-received", staged.key)) == content
    assert cache.export("blob-sent", staged.key, tmp_path / "cr.bin") == len(content)
    assert (tmp_path / "cr.bin").read_bytes() == content
    cache.remove("blob-sent")
    assert "blob-sent" not in cache
    with pytest.raises(FileNotFoundError):
        cache.read("blob-sent", staged.key)
    with pytest.raises(ValueError):
        cache.read("../liaison.db", staged.key)


def test_document_cache_refuses_a_blob_that_is_not_the_shared_one(tmp_path: Path) -> None:
    cache = DocumentCache(tmp_path / "documents")
    staged = cache.encrypt(io.BytesIO(b"ordonnance"))
    with cache.open_staged(staged) as f:
        ciphertext = bytearray(f.read())
    ciphertext[-1] ^= 1
    with pytest.raises(DecryptError):
        cache.store("blob-bad", [bytes(ciphertext)], staged.key.ciphertext_sha256)
    assert cache.blob_ids() == set()
    assert [p.name for p in (tmp_path / "documents").iterdir()] == [".staging"]
    # Damaged on disk after caching: reading fails and export leaves nothing behind.
    cache.store("blob-ok", [bytes(ciphertext)], hashlib.sha256(ciphertext).digest())
    with pytest.raises(DecryptError):
        cache.export("blob-ok", staged.key, tmp_path / "out.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["documents"]
    assert cache.discard_staged() == 1
