"""Room membership end to end: invite, remove, leave, and two commits racing for one epoch."""

from __future__ import annotations

import asyncio

import pytest

from app.client.connection import Connection
from app.client.engine import EngineError
from app.client.events import MessageReceived, RoomChanged
from crypto.errors import MLSError
from protocol import frames as fr
from storage.custody import MemoryCustody
from storage.members import RoomRole
from storage.rooms import RoomKind
from tests.engine_support import Watched, enroll, group_of, until


def _members(watched: Watched, room_id: str) -> set[str]:
    return {m.user_id for m in watched.engine.members(room_id)}


def _agree(room_id: str, *devices: Watched) -> bool:
    """Every device is in the same epoch of the room, with the same secrets."""
    groups = [group_of(d.engine, room_id) for d in devices]
    return len({(g.epoch, g.epoch_authenticator) for g in groups}) == 1


async def _converse(room_id: str, sender: Watched, body: str, *readers: Watched) -> None:
    await sender.engine.send_text(room_id, body)
    for reader in readers:
        assert (await reader.next(MessageReceived)).message.body == body


@pytest.mark.asyncio
async def test_invite_remove_race_and_leave(relay, tmp_path, monkeypatch):
    custody = MemoryCustody()
    alice, bob, carol, dave, eve = [
        await enroll(relay, tmp_path, name, custody)
        for name in ("alice", "bob", "carol", "dave", "eve")
    ]
    user = {w: w.engine.user_id for w in (alice, bob, carol, dave, eve)}
    try:
        room_id = await alice.engine.create_room(RoomKind.GROUP, "Réa", [user[bob]])
        await bob.next(RoomChanged)

        # Alice invites Carol: she joins by the Welcome, Bob processes the commit.
        await alice.engine.invite(room_id, [user[carol]])
        assert (await carol.next(RoomChanged)).room.id == room_id
        await until(lambda: _agree(room_id, alice, bob, carol))
        assert (
            _members(carol, room_id)
            == _members(bob, room_id)
            == {
                user[alice],
                user[bob],
                user[carol],
            }
        )
        await _converse(room_id, alice, "bienvenue Carol", bob, carol)

        # Alice removes Bob: he learns it, and what follows is beyond his keys.
        sent: list[fr.Send] = []
        send = Connection.send

        async def spying(self: Connection, frame: fr.Send | fr.Commit | fr.Ack) -> None:
            if isinstance(frame, fr.Send):
                sent.append(frame)
            await send(self, frame)

        await alice.engine.remove(room_id, user[bob])
        removed = await bob.next(RoomChanged)
        assert removed.room.id == room_id and not removed.active
        await until(lambda: _agree(room_id, alice, carol))
        assert _members(bob, room_id) == _members(carol, room_id) == {user[alice], user[carol]}
        with monkeypatch.context() as spied:
            spied.setattr(Connection, "send", spying)
            await _converse(room_id, alice, "sans Bob", carol)
        await _converse(room_id, carol, "bien reçu", alice)
        with pytest.raises(MLSError):
            group_of(bob.engine, room_id).process(sent[-1].payload)
        assert "sans Bob" not in [m.body for m in bob.engine.messages(room_id)]
        with pytest.raises(EngineError, match="no longer a member"):
            await bob.engine.send_text(room_id, "encore là ?")

        # Alice invites Bob back: the same room again, his history kept, what was said while
        # he was out beyond him, and he talks again.
        await alice.engine.invite(room_id, [user[bob]])
        back = await bob.next(RoomChanged)
        assert back.room.id == room_id and back.active
        await until(lambda: _agree(room_id, alice, bob, carol))
        bodies = [m.body for m in bob.engine.messages(room_id)]
        assert "bienvenue Carol" in bodies and "sans Bob" not in bodies
        await _converse(room_id, bob, "de retour", alice, carol)
        await alice.engine.remove(room_id, user[bob])
        assert not (await bob.next(RoomChanged)).active
        await until(lambda: _agree(room_id, alice, carol))

        # Alice invites Dave while Carol invites Eve, both on the same epoch: one commit wins,
        # the other is refused as stale, built again on the winner's epoch, and accepted.
        epochs: list[int] = []
        both_built = asyncio.Barrier(2)

        async def racing(self: Connection, frame: fr.Send | fr.Commit | fr.Ack) -> None:
            if isinstance(frame, fr.Commit) and len(epochs) < 2:
                epochs.append(frame.epoch)
                await both_built.wait()
            await send(self, frame)

        await alice.engine.set_role(room_id, user[carol], RoomRole.ADMIN)  # invites need it
        await until(lambda: carol.engine.room_state(room_id).roles.get(user[carol]) is not None)
        before = group_of(alice.engine, room_id).epoch
        with monkeypatch.context() as raced:
            raced.setattr(Connection, "send", racing)
            await asyncio.gather(
                alice.engine.invite(room_id, [user[dave]]),
                carol.engine.invite(room_id, [user[eve]]),
            )
        assert epochs == [before, before]
        await dave.next(RoomChanged)
        await eve.next(RoomChanged)
        everyone = (alice, carol, dave, eve)
        await until(lambda: _agree(room_id, *everyone))
        assert group_of(eve.engine, room_id).epoch == before + 2
        for w in everyone:
            assert _members(w, room_id) == {user[alice], user[carol], user[dave], user[eve]}
        await _converse(room_id, eve, "Eve est là", alice, carol, dave)

        # Carol leaves: she proposes her removal, a remaining member commits it.
        await carol.engine.leave(room_id)
        assert not (await carol.next(RoomChanged)).active
        assert carol.engine.rooms() == []
        remaining = (alice, dave, eve)
        await until(
            lambda: (
                all(_members(w, room_id) == {user[alice], user[dave], user[eve]} for w in remaining)
                and _agree(room_id, *remaining)
            )
        )
        assert group_of(alice.engine, room_id).epoch == before + 3
        await _converse(room_id, dave, "après Carol", alice, eve)
        await asyncio.sleep(0.2)
        assert carol.engine.messages(room_id) == []
    finally:
        for w in (alice, bob, carol, dave, eve):
            await w.engine.stop()
