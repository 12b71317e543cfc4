"""The unlock screen's logic against a real enrolled profile: a PIN-guarded database opens
only with the right PIN, and wrong ones count down to the wipe."""

from __future__ import annotations

import pytest

from app.client.engine import Engine
from app.ui.profile import Profile, UnlockedKey
from app.ui.viewmodels.unlock import Unlock
from storage.custody import MemoryCustody
from storage.rooms import RoomKind


@pytest.mark.asyncio
async def test_the_pin_opens_the_profile_and_wrong_ones_count_down(relay, tmp_path):
    profile = Profile(tmp_path / "phone", MemoryCustody())
    assert profile.account_id() is None  # not enrolled: the app shows onboarding
    code = relay.invite(relay.add_user("Chloé Bernard", "nurse"))
    engine = await Engine.enroll(profile.directory, relay.url, code, profile.custody)
    await engine.start()
    room_id = await engine.create_room(RoomKind.GROUP, "Notes", [])
    await engine.send_text(room_id, "Transmissions lit 4")
    account_id = engine.device_id
    profile.pin_lock().enable(account_id, "4821")
    await engine.stop()
    assert profile.account_id() == account_id
    assert profile.pin_lock().is_enabled(account_id)

    unlock = Unlock(profile, account_id)
    redraws = []
    unlock.observe(lambda: redraws.append(unlock.error_key))
    assert unlock.submit("1111") is None
    assert (unlock.error_key, unlock.remaining) == ("unlock.error.wrong",
                                                    profile.pin_lock().max_attempts - 1)
    assert redraws == ["unlock.error.wrong"]

    opened = unlock.submit("4821")
    assert opened is not None
    try:
        assert [m.body for m in opened.messages(room_id)] == ["Transmissions lit 4"]
    finally:
        await opened.stop()


def test_an_unlocked_key_serves_its_account_only():
    key = bytes(range(32))
    custody = UnlockedKey("d_a", key)
    assert custody.load("d_a") == key
    assert custody.load("d_b") is None
    with pytest.raises(NotImplementedError):
        custody.store("d_a", key)
    with pytest.raises(ValueError):
        UnlockedKey("d_a", b"short")
