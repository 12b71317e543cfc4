"""Rooms end to end against the real relay: their state, roles enforced by senders and by every
receiver, and devices refused when the organisation did not attest them."""

from __future__ import annotations

import os
from datetime import date

import pytest

from app.client.content import TextContent
from app.client.engine import CIPHER_SUITE, Engine, EngineError
from app.client.events import MessageReceived, RoomChanged, RoomRuleBroken
from app.client.relay_api import RelayClient
from crypto import primitives
from crypto.credential import attest
from crypto.group import create_key_package
from crypto.message import MLSMessage
from protocol import rest
from storage.custody import MemoryCustody
from storage.members import RoomRole
from storage.rooms import UNREADABLE_SETTING, PatientContext, PatientIdentifier, RoomKind
from tests.engine_support import Watched, enroll, group_of, pair, until
from tests.forged_client import forced_commit, forced_post

PATIENT = PatientContext(
    identifiers=(PatientIdentifier(system="urn:oid:1.2.250.1.213.1.4.10", value="2800175123456"),),
    family_name="Lefèvre",
    given_names=("Jeanne",),
    birth_date=date(1980, 1, 17),
)


def _role(watched: Watched, room_id: str, user_id: str) -> RoomRole | None:
    return next((m.role for m in watched.engine.members(room_id) if m.user_id == user_id), None)


@pytest.mark.asyncio
async def test_room_state_reaches_every_member(relay, tmp_path):
    custody = MemoryCustody()
    alice, bob = [await enroll(relay, tmp_path, name, custody) for name in ("alice", "bob")]
    try:
        for bad, why in [
            (dict(kind=RoomKind.GROUP, name="Garde", patient=PATIENT), "patient"),
            (dict(kind=RoomKind.PATIENT, name="Mme L", retention_days=0), "retention_days"),
            (dict(kind=RoomKind.GROUP, name="  "), "name"),
        ]:
            with pytest.raises(EngineError, match=why):
                await alice.engine.create_room(member_user_ids=[bob.engine.user_id], **bad)
        with pytest.raises(EngineError, match="direct"):
            await alice.engine.create_room(RoomKind.DIRECT, "Avis", [])
        assert alice.engine.rooms() == []

        room_id = await alice.engine.create_room(
            RoomKind.PATIENT, "Mme Lefèvre", [bob.engine.user_id], patient=PATIENT,
            retention_days=30,
        )
        joined = (await bob.next(RoomChanged)).room
        assert (joined.patient, joined.retention_days, joined.kind) == (
            PATIENT, 30, RoomKind.PATIENT)
        assert _role(bob, room_id, alice.engine.user_id) is RoomRole.OWNER
        assert _role(bob, room_id, bob.engine.user_id) is RoomRole.MEMBER

        await alice.engine.update_room(room_id, name="Mme Lefèvre (ch. 12)", retention_days=None)
        changed = (await bob.next(RoomChanged)).room
        assert (changed.name, changed.retention_days, changed.patient) == (
            "Mme Lefèvre (ch. 12)", None, PATIENT)
        mine = alice.engine.rooms()[0]
        assert (mine.name, mine.retention_days, mine.patient) == ("Mme Lefèvre (ch. 12)", None,
                                                                  PATIENT)

        with pytest.raises(EngineError, match="retention_days"):
            await alice.engine.update_room(room_id, retention_days=-1)
        await alice.engine.update_room(room_id, archived=True)
        await until(lambda: bob.engine.room_state(room_id).archived)
        for engine in (alice.engine, bob.engine):
            with pytest.raises(EngineError, match="archived"):
                await engine.send_text(room_id, "après la sortie")
        assert alice.engine.messages(room_id) == bob.engine.messages(room_id) == []
    finally:
        for w in (alice, bob):
            await w.engine.stop()


@pytest.mark.asyncio
async def test_roles_decide_who_manages_and_who_posts(relay, tmp_path):
    custody = MemoryCustody()
    alice, bob, carol, dave = [
        await enroll(relay, tmp_path, name, custody) for name in ("alice", "bob", "carol", "dave")
    ]
    user = {w: w.engine.user_id for w in (alice, bob, carol, dave)}
    try:
        room_id = await alice.engine.create_room(RoomKind.GROUP, "Réa", [user[bob], user[carol]])
        await bob.next(RoomChanged)
        await carol.next(RoomChanged)

        # A plain member manages nothing.
        for attempt in (
            bob.engine.invite(room_id, [user[dave]]),
            bob.engine.remove(room_id, user[carol]),
            bob.engine.update_room(room_id, name="Bob's"),
            bob.engine.set_role(room_id, user[bob], RoomRole.ADMIN),
        ):
            with pytest.raises(EngineError, match="owners and moderators"):
                await attempt

        # An observer reads and sends receipts, but does not post.
        await alice.engine.set_role(room_id, user[carol], RoomRole.OBSERVER)
        await until(lambda: _role(carol, room_id, user[carol]) is RoomRole.OBSERVER)
        with pytest.raises(EngineError, match="observers"):
            await carol.engine.send_text(room_id, "je commente")
        ref = await alice.engine.send_text(room_id, "bilan à 14 h")
        assert (await carol.next(MessageReceived)).message.ref == ref
        await carol.engine.mark_read(room_id, ref)
        await until(lambda: alice.engine.messages(room_id)[-1].status.name == "READ")

        # A moderator manages, but makes or unmakes no owner.
        await alice.engine.set_role(room_id, user[bob], RoomRole.ADMIN)
        await until(lambda: _role(bob, room_id, user[bob]) is RoomRole.ADMIN)
        with pytest.raises(EngineError, match="owner"):
            await bob.engine.set_role(room_id, user[alice], RoomRole.MEMBER)
        await bob.engine.invite(room_id, [user[dave]])
        assert (await dave.next(RoomChanged)).room.id == room_id
        await bob.engine.remove(room_id, user[carol])
        await until(lambda: not group_of(carol.engine, room_id).active)
        await until(lambda: {m.user_id for m in alice.engine.members(room_id)}
                    == {user[alice], user[bob], user[dave]})
        assert user[carol] not in alice.engine.room_state(room_id).roles  # no role to come back to
    finally:
        for w in (alice, bob, carol, dave):
            await w.engine.stop()


@pytest.mark.asyncio
async def test_receivers_refuse_what_breaks_the_rules(relay, tmp_path):
    custody = MemoryCustody()
    alice, bob, carol = [
        await enroll(relay, tmp_path, name, custody) for name in ("alice", "bob", "carol")
    ]
    user = {w: w.engine.user_id for w in (alice, bob, carol)}
    try:
        room_id = await alice.engine.create_room(RoomKind.GROUP, "Réa", [user[bob], user[carol]])
        await bob.next(RoomChanged)
        await carol.next(RoomChanged)
        await alice.engine.set_role(room_id, user[carol], RoomRole.OBSERVER)
        await until(lambda: _role(bob, room_id, user[carol]) is RoomRole.OBSERVER
                    and _role(carol, room_id, user[carol]) is RoomRole.OBSERVER)

        # An observer's post, sent past its engine's checks, is dropped by every receiver.
        await forced_post(carol, room_id, TextContent(body="je poste quand même"))
        for receiver in (alice, bob):
            broken = await receiver.next(RoomRuleBroken)
            assert (broken.user_id, broken.room.id) == (user[carol], room_id)
            assert "observers" in broken.reason
            assert receiver.engine.messages(room_id) == []

        # A plain member's rename, past its engine's checks: accepted by the blind relay, not
        # taken by the others, whose room and group stay as they were.
        epochs = {w: group_of(w.engine, room_id).epoch for w in (alice, carol)}
        await forced_commit(bob, room_id, name="Renommée par Bob")
        for receiver in (alice, carol):
            broken = await receiver.next(RoomRuleBroken)
            assert broken.user_id == user[bob] and "owners and moderators" in broken.reason
            assert receiver.engine.rooms()[0].name == "Réa"
            assert group_of(receiver.engine, room_id).epoch == epochs[receiver]
        # only the offender's device took it
        assert bob.engine.room_state(room_id).name == "Renommée par Bob"
        # What Bob sends next is for an epoch the others refused: they say so, and store none.
        assert not alice.engine.unreadable(room_id)
        await bob.engine.send_text(room_id, "dans l'époque refusée")
        for receiver in (alice, carol):
            await until(lambda r=receiver: r.engine.unreadable(room_id))
            assert receiver.engine.messages(room_id) == []
        assert not bob.engine.unreadable(room_id)
    finally:
        for w in (alice, bob, carol):
            await w.engine.stop()


@pytest.mark.asyncio
async def test_a_room_no_one_can_repair_in_place_is_opened_again_by_an_owner(relay, tmp_path):
    """Bob's rename, refused by every other device, owners' included, leaves them unable to
    read the room and no one to remove him in place: Alice opens it again as a new room,
    without him."""
    custody = MemoryCustody()
    alice, bob, carol, dave = [
        await enroll(relay, tmp_path, name, custody) for name in ("alice", "bob", "carol", "dave")
    ]
    user = {w: w.engine.user_id for w in (alice, bob, carol, dave)}
    try:
        room_id = await alice.engine.create_room(
            RoomKind.PATIENT, "Mme Lefèvre", [user[bob], user[carol], user[dave]],
            patient=PATIENT, retention_days=30)
        for w in (bob, carol, dave):
            await w.next(RoomChanged)
        await alice.engine.set_role(room_id, user[carol], RoomRole.ADMIN)
        await until(lambda: all(_role(w, room_id, user[carol]) is RoomRole.ADMIN
                                for w in (bob, carol, dave)))
        with pytest.raises(EngineError, match="reads the room"):
            await alice.engine.recreate_room(room_id)

        await forced_commit(bob, room_id, name="Renommée par Bob")
        await bob.engine.send_text(room_id, "dans l'époque refusée")
        for w in (alice, carol, dave):
            await until(lambda w=w: w.engine.unreadable(room_id))
        with pytest.raises(EngineError, match="owners and moderators"):
            await dave.engine.recreate_room(room_id)
        assert [r.id for r in dave.engine.rooms()] == [room_id]
        # Nor may a plain member pass a room of their own off as its replacement.
        claimed = dave.engine.room_state(room_id).model_copy(
            update={"replaces": room_id, "roles": {user[dave]: RoomRole.OWNER}})
        decoy = await dave.engine._open_room(claimed, [user[carol]])
        while (await carol.next(RoomChanged)).room.id != decoy:
            pass
        assert carol.engine.replacement(room_id) is None

        new_id = await alice.engine.recreate_room(room_id)
        assert new_id != room_id
        assert await alice.engine.recreate_room(room_id) == new_id  # a second tap: the same
        for w in (carol, dave):
            while (joined := (await w.next(RoomChanged)).room).id != new_id:
                pass
            assert (joined.kind, joined.name, joined.patient, joined.retention_days) == (
                RoomKind.PATIENT, "Mme Lefèvre", PATIENT, 30)
            assert not w.engine.unreadable(new_id)
            # the old room, which they cannot read either, now leads to the new one
            replacement = w.engine.replacement(room_id)
            assert replacement is not None and replacement.id == new_id
        # Carol, a moderator, reopening too finds Alice's room rather than open a third
        assert await carol.engine.recreate_room(room_id) == new_id
        state = carol.engine.room_state(new_id)
        assert state.roles == {user[alice]: RoomRole.OWNER, user[carol]: RoomRole.ADMIN}
        assert {m.user_id for m in carol.engine.members(new_id)} == {
            user[alice], user[carol], user[dave]}  # not Bob, whose rename was refused
        assert new_id not in {r.id for r in bob.engine.rooms()}

        await alice.engine.send_text(new_id, "On reprend ici.")
        received = await carol.next(MessageReceived)
        assert (received.room.id, received.message.body) == (new_id, "On reprend ici.")
        assert alice.engine.unreadable(room_id)  # the old room stays, until the user leaves it
        assert alice.engine.replacement(room_id).id == new_id  # type: ignore[union-attr]
        assert bob.engine.replacement(room_id) is None
        # nothing new is written where nobody reads on any more
        with pytest.raises(EngineError, match=f"opened again as 'Mme Lefèvre' \\({new_id}\\)"):
            await carol.engine.send_text(room_id, "encore ici ?")
        path = tmp_path / "note.txt"
        path.write_text("bilan")
        with pytest.raises(EngineError, match="opened again"):
            await carol.engine.send_file(room_id, path)
        # a device invited back into the old room (its Welcome clears the mark) writes there
        with carol.engine._store.db.transaction():
            carol.engine._store.settings.delete(UNREADABLE_SETTING + room_id)
        assert carol.engine.replacement(room_id) is None
    finally:
        for w in (alice, bob, carol, dave):
            await w.engine.stop()


@pytest.mark.asyncio
async def test_a_direct_room_is_not_reopened_without_the_other_person(relay, tmp_path):
    alice, bob, room_id = await pair(relay, tmp_path, MemoryCustody(), RoomKind.DIRECT, "Avis")
    try:
        await forced_commit(bob, room_id, name="Renommée par Bob")
        await bob.engine.send_text(room_id, "dans l'époque refusée")
        await until(lambda: alice.engine.unreadable(room_id))
        with pytest.raises(EngineError, match="other person's change was refused"):
            await alice.engine.recreate_room(room_id)
        assert [r.id for r in alice.engine.rooms()] == [room_id]  # no room for one
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


@pytest.mark.asyncio
async def test_a_device_the_organisation_did_not_attest_is_refused(relay, tmp_path, monkeypatch):
    """The relay only hands out KeyPackages carrying the device's attested credential, so the
    forged one comes from a patched claim: what a compromised relay could answer."""
    custody = MemoryCustody()
    alice, bob, carol = [
        await enroll(relay, tmp_path, name, custody) for name in ("alice", "bob", "carol")
    ]
    try:
        seed = os.urandom(32)
        forged = attest(os.urandom(32), bob.engine.user_id.encode(), b"bob-rogue-device",
                        primitives.ed25519_public(seed))
        key_package, _ = create_key_package(CIPHER_SUITE, forged, seed)
        claimed = rest.ClaimedKeyPackages(key_packages=[rest.ClaimedKeyPackage(
            device_id="bob-rogue-device", user_id=bob.engine.user_id,
            key_package=MLSMessage(key_package).serialize(), last_resort=False,
        )])

        async def forged_claim(self: RelayClient, device_ids: list[str]) -> rest.ClaimedKeyPackages:
            return claimed

        room_id = await alice.engine.create_room(RoomKind.GROUP, "Réa", [carol.engine.user_id])
        await carol.next(RoomChanged)
        epoch = group_of(alice.engine, room_id).epoch
        monkeypatch.setattr(RelayClient, "claim_key_packages", forged_claim)
        with pytest.raises(EngineError, match=r"bob-rogue-device .*not attested"):
            await alice.engine.create_room(RoomKind.GROUP, "Garde", [bob.engine.user_id])
        with pytest.raises(EngineError, match="not attested"):
            await alice.engine.invite(room_id, [bob.engine.user_id])
        assert [r.id for r in alice.engine.rooms()] == [room_id]
        assert group_of(alice.engine, room_id).epoch == epoch
        assert bob.engine.rooms() == []
    finally:
        for w in (alice, bob, carol):
            await w.engine.stop()


@pytest.mark.asyncio
async def test_retention_erases_what_the_room_no_longer_keeps(relay, tmp_path):
    """Retention is applied by the engine itself: messages older than the room's period go at
    start, those of a room that keeps everything stay."""
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    bob = await enroll(relay, tmp_path, "bob", custody)
    try:
        kept = await alice.engine.create_room(
            RoomKind.PATIENT, "Sortie", [bob.engine.user_id], retention_days=1
        )
        forever = await alice.engine.create_room(RoomKind.GROUP, "Équipe", [bob.engine.user_id])
        await until(lambda: {r.id for r in bob.engine.rooms()} == {kept, forever})
        for room_id in (kept, forever):
            for body in ("ancien", "récent"):
                await alice.engine.send_text(room_id, body)
        await until(lambda: all(len(bob.engine.messages(r)) == 2 for r in (kept, forever)))
        await bob.engine.stop()
        bob = Watched(Engine.open(tmp_path / "bob", custody))
        bob.engine._store.db.execute(  # two days ago, as far as Bob's cache knows
            "UPDATE messages SET server_ts = server_ts - 2 * 86400 WHERE body = 'ancien'"
        )
        await bob.engine.start()
        await until(lambda: [m.body for m in bob.engine.messages(kept)] == ["récent"])
        assert [m.body for m in bob.engine.messages(forever)] == ["ancien", "récent"]
    finally:
        await alice.engine.stop()
        await bob.engine.stop()
