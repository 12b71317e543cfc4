"""Revoking a device end to end: the relay cuts it off, the members of its rooms remove its
leaf (racing, converging on one commit), and the revoked engine stops and can be wiped."""

from __future__ import annotations

import logging

import pytest

from app.client.engine import Engine, EngineError, _devices
from app.client.events import DeviceRevoked, RoomChanged
from storage.custody import MemoryCustody
from storage.rooms import RoomKind
from tests.engine_support import Watched, enroll, group_of, until


def _devices_in(w: Watched, room_id: str) -> set[str]:
    return set(_devices(group_of(w.engine, room_id)))


@pytest.mark.asyncio
async def test_revoked_device_is_removed_from_its_rooms_and_cut_off(relay, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="liaison.client.engine")
    custody = MemoryCustody()
    alice, bob, carol, dave = [
        await enroll(relay, tmp_path, name, custody) for name in ("alice", "bob", "carol", "dave")
    ]
    members = (alice, carol, dave)
    running = [bob, *members]
    try:
        room_id = await alice.engine.create_room(
            RoomKind.GROUP, "Bloc", [w.engine.user_id for w in (bob, carol, dave)]
        )
        for w in (bob, carol, dave):
            await w.next(RoomChanged)
        assert bob.engine.device_id in _devices_in(carol, room_id)
        before = group_of(alice.engine, room_id).epoch

        # Bob lists his devices and revokes this one (as from a lost phone's other device).
        listed = await bob.engine.devices()
        assert [(d.id, d.revoked) for d in listed] == [(bob.engine.device_id, False)]
        await bob.engine.revoke_device(bob.engine.device_id)

        await bob.next(DeviceRevoked)
        with pytest.raises(EngineError, match="revoked"):
            await bob.engine.send_text(room_id, "encore moi")
        with pytest.raises(EngineError, match="revoked"):
            await bob.engine.devices()

        # Every remaining member got the relay's notice and tried to commit the removal: one
        # commit won the epoch, the others caught up and found the leaf gone.
        def converged() -> bool:
            epochs = {group_of(w.engine, room_id).epoch for w in members}
            return len(epochs) == 1 and all(
                bob.engine.device_id not in _devices_in(w, room_id) for w in members
            )

        await until(converged, timeout=20)
        assert group_of(carol.engine, room_id).epoch == before + 1
        assert not [r for r in caplog.records if "background work failed" in r.message]
        for w in members:
            assert {m.user_id for m in w.engine.members(room_id)} == {
                alice.engine.user_id, carol.engine.user_id, dave.engine.user_id
            }

        await carol.engine.send_text(room_id, "sans Bob")
        for w in (alice, dave):
            await until(lambda w=w: "sans Bob" in [m.body for m in w.engine.messages(room_id)])
        assert "sans Bob" not in [m.body for m in bob.engine.messages(room_id)]

        # The UI decides to wipe the revoked device: nothing of the profile stays.
        running.remove(bob)
        report = await bob.engine.sign_out(custody)
        assert report.complete
        assert not (tmp_path / "bob").exists()
        assert custody.load(bob.engine.device_id) is None
        with pytest.raises(EngineError):
            Engine.open(tmp_path / "bob", custody)
    finally:
        for w in running:
            await w.engine.stop()
