"""Onboarding and the connection banner against a real relay, with real engines."""

from __future__ import annotations

import pytest
from nacl.pwhash import argon2id

from app.client.engine import Engine
from app.ui.viewmodels.connection_banner import ConnectionBanner, Link
from app.ui.viewmodels.onboarding import Onboarding, Step
from storage.custody import MemoryCustody
from storage.custody_accounts import AccountDirectory
from storage.custody_pin import PinLock
from storage.rooms import RoomKind
from tests.engine_support import until


@pytest.mark.asyncio
async def test_onboarding_enrols_shows_totp_and_sets_a_pin(relay, tmp_path):
    custody = MemoryCustody()
    pins = PinLock(custody, AccountDirectory(tmp_path / "keys"),
                   ops=argon2id.OPSLIMIT_MIN, mem=argon2id.MEMLIMIT_MIN, allow_weak=True)
    enrolled: list[Engine] = []

    async def enroll(url: str, code: str) -> Engine:
        enrolled.append(await Engine.enroll(tmp_path / "phone", url, code, custody))
        return enrolled[-1]

    flow = Onboarding(enroll, lambda engine, pin: pins.enable(engine.device_id, pin))
    changes: list[Step] = []
    flow.observe(lambda: changes.append(flow.step))
    code = relay.invite(relay.add_user("Chloé Bernard", "nurse"))
    try:
        flow.relay_url, flow.invite_code = "http://relay.example.org", code
        await flow.submit_account()  # plaintext http to another machine: refused
        assert (flow.step, flow.error_key) == (Step.ACCOUNT, "onboarding.error.relay_url")
        flow.relay_url, flow.invite_code = relay.url, "short"
        await flow.submit_account()
        assert flow.error_key == "onboarding.error.invite_code"
        flow.invite_code = "WRONG-CODE-0000"
        await flow.submit_account()
        assert (flow.step, flow.error_key) == (Step.ACCOUNT, "onboarding.error.refused")
        assert enrolled == [] and flow.relay_url == relay.url  # what was typed is kept

        flow.invite_code = f"  {code} "
        await flow.submit_account()
        assert flow.step is Step.TOTP and flow.error_key is None
        assert flow.totp_uri is not None and flow.totp_uri.startswith("otpauth://totp/")
        assert len(flow.totp_secret) >= 16 and flow.totp_secret in flow.totp_uri
        flow.totp_saved()

        flow.submit_pin("12", "12")
        assert flow.error_key == "onboarding.error.pin_short"
        flow.submit_pin("4821", "4812")
        assert (flow.step, flow.error_key) == (Step.PIN, "onboarding.error.pin_mismatch")
        assert not pins.is_enabled(enrolled[0].device_id)
        flow.submit_pin("4821", "4821")
        assert flow.step is Step.DONE and pins.is_enabled(enrolled[0].device_id)
        assert changes[-1] is Step.DONE
    finally:
        for engine in enrolled:
            await engine.stop()


@pytest.mark.asyncio
async def test_banner_shows_connected_then_offline_with_waiting_messages(relay, tmp_path):
    custody = MemoryCustody()
    user = relay.add_user("alice")
    engine = await Engine.enroll(tmp_path / "alice", relay.url, relay.invite(user), custody)
    banner = ConnectionBanner(engine)
    assert (banner.link, banner.text_key) == (Link.OFFLINE, "banner.offline")
    await engine.start()
    try:
        await until(lambda: banner.link is Link.CONNECTED)
        assert banner.text_key == "banner.connected"
        room_id = await engine.create_room(RoomKind.GROUP, "Notes", [])
        relay.stop()
        await until(lambda: banner.link is not Link.CONNECTED)
        assert banner.text_key == "banner.reconnecting"
        await engine.send_text(room_id, "écrit hors ligne")
        banner.refresh()
        assert banner.waiting == 1
    finally:
        await engine.stop()
    reopened = Engine.open(tmp_path / "alice", custody)
    stopped = ConnectionBanner(reopened)
    assert (stopped.link, stopped.waiting, stopped.text_key) == (
        Link.OFFLINE, 1, "banner.offline_waiting")
    await reopened.stop()
