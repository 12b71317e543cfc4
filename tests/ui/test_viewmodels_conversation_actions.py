"""The conversation view-model's replies, edits, recalls, documents and patient banner, against
real engines and a real relay."""

from __future__ import annotations

import os
import secrets
from datetime import date, datetime

import pytest

from app.client.events import MessageChanged, MessageReceived, RoomChanged
from app.ui.viewmodels.conversation import (
    PAGE,
    Bubble,
    Conversation,
    DaySeparator,
    Document,
    Quote,
)
from app.ui.viewmodels.conversation_patient import patient_banner
from app.ui.viewmodels.people import People
from storage.custody import MemoryCustody
from storage.messages import MessageRef, NewMessage
from storage.rooms import PatientContext, PatientIdentifier, RoomKind
from tests.engine_support import enroll, pair, until

INS_TEST = "urn:oid:1.2.250.1.213.1.4.10"


def bubbles(conversation: Conversation) -> list[Bubble]:
    return [item for item in conversation.timeline if isinstance(item, Bubble)]


@pytest.mark.asyncio
async def test_reply_edit_and_recall_reach_the_other_side(relay, tmp_path):
    custody = MemoryCustody()
    alice, bob, room_id = await pair(relay, tmp_path, custody, RoomKind.GROUP, "Garde",
                                     ("Alice Martin", "Bruno Petit"))
    try:
        people = People(bob.engine)
        await people.refresh()
        at_alice = Conversation(alice.engine, People(alice.engine), room_id)
        at_bob = Conversation(bob.engine, people, room_id)

        at_alice.draft = "Dose de furosémide : 40 mg"
        assert await at_alice.send()
        [dose] = bubbles(at_alice)
        assert dose.can_change and not dose.edited
        await bob.next(MessageReceived)
        [theirs] = bubbles(at_bob)
        assert not theirs.can_change  # not Bruno's message

        at_bob.reply(theirs.ref)
        assert at_bob.reply_to == theirs.ref
        at_bob.draft = "Reçu, je prépare."
        assert await at_bob.send()
        assert at_bob.reply_to is None  # the next message is a plain one again
        answer = bubbles(at_bob)[-1]
        assert answer.reply == Quote("Alice Martin", "Dose de furosémide : 40 mg")
        await alice.next(MessageReceived)
        assert bubbles(at_alice)[-1].reply is not None

        at_alice.edit(dose.ref)
        assert (at_alice.editing, at_alice.draft) == (dose.ref, "Dose de furosémide : 40 mg")
        at_alice.draft = "   "
        assert not await at_alice.send()  # an empty edit is no edit
        at_alice.draft = "Dose de furosémide : 20 mg"
        assert await at_alice.send()
        assert at_alice.editing is None
        edited = bubbles(at_alice)[0]
        assert (edited.body, edited.edited) == ("Dose de furosémide : 20 mg", True)
        assert len(bubbles(at_alice)) == 2  # replaced, not added
        await bob.next(MessageChanged)
        assert bubbles(at_bob)[0].body == "Dose de furosémide : 20 mg"
        assert bubbles(at_bob)[-1].reply == Quote("Alice Martin", "Dose de furosémide : 20 mg")

        await at_bob.recall(theirs.ref)  # not Bruno's: refused, nothing changes
        assert at_bob.error is not None
        assert bubbles(at_bob)[0].body == "Dose de furosémide : 20 mg"

        await at_alice.recall(dose.ref)
        assert at_alice.error is None
        recalled = bubbles(at_alice)[0]
        assert recalled.recalled and recalled.body is None and not recalled.can_change
        await until(lambda: bubbles(at_bob)[0].recalled)
        assert bubbles(at_bob)[-1].reply == Quote("Alice Martin", None)  # the tombstone
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


@pytest.mark.asyncio
async def test_a_document_is_sent_fetched_and_saved_with_progress(relay, tmp_path):
    custody = MemoryCustody()
    alice, bob, room_id = await pair(relay, tmp_path, custody, RoomKind.GROUP, "Imagerie")
    try:
        at_alice = Conversation(alice.engine, People(alice.engine), room_id)
        at_bob = Conversation(bob.engine, People(bob.engine), room_id)
        seen: list[float] = []
        at_alice.observe(lambda: seen.extend(t.fraction for t in at_alice.uploads))

        content = b"%PDF-1.7\n" + os.urandom(3 * 1024 * 1024)
        name = f"echo-{secrets.token_hex(4)}.pdf"
        source = tmp_path / name
        source.write_bytes(content)
        assert await at_alice.send_document(source)
        assert seen and seen == sorted(seen) and 0 < seen[-1] <= 1.0
        assert at_alice.uploads == [] and at_alice.transfers == {}  # done: no bar left
        [sent] = bubbles(at_alice)
        assert sent.document == Document(name, len(content), "application/pdf")

        await bob.next(MessageReceived)
        [received] = bubbles(at_bob)
        assert received.document == sent.document
        fractions: list[float] = []
        at_bob.observe(lambda: fractions.extend(
            t.fraction for t in at_bob.transfers.values() if t.direction == "download"))
        assert await at_bob.fetch(received.ref)
        assert fractions and fractions[-1] == 1.0
        assert received.ref in at_bob.fetched and at_bob.transfers == {}
        saved = tmp_path / "saved" / name
        saved.parent.mkdir()
        assert await at_bob.save(received.ref, saved) == len(content)
        assert saved.read_bytes() == content

        refused = tmp_path / "script.sh"  # not a shareable type: refused, nothing sent
        refused.write_bytes(b"\x7fELF\x00\x00")
        assert not await at_alice.send_document(refused)
        assert at_alice.error and at_alice.uploads == []
        assert len(bubbles(at_alice)) == 1
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


@pytest.mark.asyncio
async def test_a_patient_room_shows_its_patient(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    bob = await enroll(relay, tmp_path, "bob", custody)
    try:
        patient = PatientContext(
            identifiers=(PatientIdentifier(system="urn:oid:1.2.250.1.213.1.4.2", value="IPP77"),
                         PatientIdentifier(system=INS_TEST, value="255087512345678")),
            family_name="Lefèvre", given_names=("Anne", "Marie"), birth_date=date(1955, 8, 1),
            ward="Cardiologie", bed="4",
        )
        room_id = await alice.engine.create_room(RoomKind.PATIENT, "Mme Lefèvre",
                                                 [bob.engine.user_id], patient=patient)
        other_id = await alice.engine.create_room(RoomKind.GROUP, "Garde", [])
        await bob.next(RoomChanged)
        banner = Conversation(bob.engine, People(bob.engine), room_id).patient
        assert banner is not None
        assert (banner.name, banner.birth_date) == ("LEFÈVRE Anne Marie", date(1955, 8, 1))
        assert (banner.identifier, banner.identifier_is_ins, banner.test_identity) == (
            "255087512345678", True, True)  # the INS, before the hospital's own number
        assert (banner.ward, banner.bed) == ("Cardiologie", "4")
        assert Conversation(alice.engine, People(alice.engine), other_id).patient is None
        without_ins = patient_banner(patient.model_copy(update={
            "identifiers": patient.identifiers[:1], "ward": None, "bed": None}))
        assert without_ins is not None
        assert (without_ins.identifier, without_ins.identifier_is_ins) == ("IPP77", False)
        assert without_ins.ward is None
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


@pytest.mark.asyncio
async def test_a_ten_thousand_message_room_opens_on_its_last_page(relay, tmp_path):
    """Seeded through the cache (as a long-lived room's history would be): opening reads one
    page, and paging back walks the history in order without gaps or repeats."""
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    try:
        room_id = await alice.engine.create_room(RoomKind.GROUP, "Archives", [])
        store = alice.engine._store  # the test's hook into the cache, for speed
        start = 1_700_000_000.0
        with store.db.transaction():
            for i in range(10_000):
                store.messages.add_incoming(NewMessage(
                    ref=MessageRef("other-device", f"m{i:05}"), room_id=room_id,
                    sender_user="someone", body=f"message {i}", local_ts=start + i * 60,
                    server_ts=start + i * 60))
        conversation = Conversation(alice.engine, People(alice.engine), room_id)
        assert [b.body for b in bubbles(conversation)] == [
            f"message {i}" for i in range(10_000 - PAGE, 10_000)]
        assert conversation.has_older
        for _ in range(3):
            assert conversation.load_older() == PAGE
        shown = [b.body for b in bubbles(conversation)]
        assert shown == [f"message {i}" for i in range(10_000 - 4 * PAGE, 10_000)]
        separators = [i for i in conversation.timeline if isinstance(i, DaySeparator)]
        assert len(separators) == len({datetime.fromtimestamp(start + i * 60).date()
                                       for i in range(10_000 - 4 * PAGE, 10_000)})
    finally:
        await alice.engine.stop()
