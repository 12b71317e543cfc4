"""The settings view-model against real engines and a real relay, and the auto-lock timer."""

from __future__ import annotations

import asyncio
import time

import pytest
from nacl.signing import SigningKey

from app.client.engine import Engine
from app.ui.preferences import PREFERENCES_FILE, Preferences, Theme
from app.ui.profile import Profile
from app.ui.viewmodels.autolock import IdleTimer, Relock
from app.ui.viewmodels.settings import Settings
from crypto.safety_number import safety_number
from relay import totp
from storage.custody import MemoryCustody
from storage.custody_wipe import WipeReport
from tests.engine_support import enroll


def no_sign_out(_engine: Engine) -> WipeReport:
    raise AssertionError("not signing out in this test")


@pytest.mark.asyncio
async def test_devices_link_and_revoke(relay, tmp_path):
    custody = MemoryCustody()
    user_id = relay.add_user("Alice Martin")
    alice = await Engine.enroll(tmp_path / "phone", relay.url, relay.invite(user_id), custody)
    await alice.start()
    try:
        settings = Settings(alice, tmp_path / "phone", no_sign_out)
        await settings.load_devices()
        [this] = settings.devices
        assert this.this_device and not this.revoked

        request = await Engine.link(tmp_path / "desktop", relay.url, custody,
                                    device_name="Poste infirmier")
        assert await settings.approve_link(request.code, "12") is False  # not a TOTP code
        assert settings.error_key == "settings.error.link_input"
        assert await settings.approve_link("000000", "123456") is False  # refused by the relay
        assert settings.error_key == "settings.error.link"
        assert alice.totp_uri is not None
        code = totp.code_at(totp.b32_secret(alice.totp_uri), int(time.time() // totp.STEP))
        desktop, approved = await asyncio.gather(request.complete(timeout=60),
                                                 settings.approve_link(request.code, code))
        assert approved is True
        assert settings.linked == "Poste infirmier" and settings.error_key is None
        assert {d.name for d in settings.devices} == {"Liaison", "Poste infirmier"}

        await settings.revoke(desktop.device_id)
        revoked = {d.device_id: d.revoked for d in settings.devices}
        assert revoked == {alice.device_id: False, desktop.device_id: True}
        await desktop.stop()
    finally:
        await alice.stop()


@pytest.mark.asyncio
async def test_safety_number_matches_on_both_sides(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "Alice Martin", custody)
    bob = await enroll(relay, tmp_path, "Bruno Petit", custody)
    try:
        at_alice = Settings(alice.engine, tmp_path / "Alice Martin", no_sign_out)
        at_bob = Settings(bob.engine, tmp_path / "Bruno Petit", no_sign_out)
        await at_alice.show_safety_number(bob.engine.user_id)
        await at_bob.show_safety_number(alice.engine.user_id)
        assert at_alice.safety is not None and at_alice.safety == at_bob.safety
        assert len(at_alice.safety.digits) == 60 and at_alice.safety_user == bob.engine.user_id
        seeds = {alice.engine.user_id: alice.engine.account.signature_private_key,
                 bob.engine.user_id: bob.engine.account.signature_private_key}
        keys = {u: [bytes(SigningKey(s).verify_key)] for u, s in seeds.items()}
        expected = safety_number(alice.engine.user_id, keys[alice.engine.user_id],
                                 bob.engine.user_id, keys[bob.engine.user_id])
        assert at_alice.safety == expected  # the devices' own keys, not something else
        await at_alice.show_safety_number("no-such-user")
        assert at_alice.error_key == "settings.error.safety"
    finally:
        await alice.engine.stop()
        await bob.engine.stop()


@pytest.mark.asyncio
async def test_preferences_persist_and_sign_out_asks_first(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "Alice Martin", custody)
    profile = tmp_path / "Alice Martin"
    wiped: list[WipeReport] = []

    async def sign_out(engine: Engine) -> WipeReport:
        wiped.append(await engine.sign_out(custody))
        return wiped[-1]

    settings = Settings(alice.engine, profile, sign_out)
    assert settings.preferences == Preferences()  # system theme, 5 minutes
    assert settings.preferences.lock_minutes == 5
    settings.set_theme(Theme.DARK)
    settings.set_lock_minutes(15)
    with pytest.raises(ValueError):
        settings.set_lock_minutes(7)
    assert Preferences.load(profile) == Preferences(theme=Theme.DARK, lock_minutes=15)
    (profile / PREFERENCES_FILE).write_text("{not json", "utf-8")
    assert Preferences.load(profile) == Preferences()  # a bad file: the defaults

    assert await settings.sign_out() is None  # not confirmed: nothing wiped
    assert wiped == [] and alice.engine.rooms() == []
    settings.ask_sign_out()
    settings.ask_sign_out(False)
    assert await settings.sign_out() is None and wiped == []
    settings.ask_sign_out()
    report = await settings.sign_out()
    assert report is not None and report.complete and settings.signed_out
    assert custody.load(alice.engine.device_id) is None


def test_idle_timer_expires_after_its_minutes_and_a_touch_restarts_it():
    now = [1000.0]
    timer = IdleTimer(5, clock=lambda: now[0])
    now[0] += 4 * 60
    assert not timer.expired() and timer.remaining() == 60
    timer.touch()
    now[0] += 4 * 60 + 59
    assert not timer.expired()
    now[0] += 1
    assert timer.expired() and timer.remaining() == 0


@pytest.mark.asyncio
async def test_relock_takes_the_pin_and_gives_back_the_running_engine(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "Alice Martin", custody)
    try:
        profile = Profile(tmp_path / "Alice Martin", custody)
        profile.pin_lock().enable(alice.engine.device_id, "2468")
        relock = Relock(profile, alice.engine)
        assert relock.submit("1111") is None
        assert relock.error_key == "unlock.error.wrong" and relock.remaining is not None
        assert relock.submit("2468") is alice.engine
    finally:
        await alice.engine.stop()
