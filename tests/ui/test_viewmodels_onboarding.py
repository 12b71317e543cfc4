"""Onboarding and the connection banner against a real relay, with real engines."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from nacl.pwhash import argon2id

from app.client.engine import Engine
from app.client.events import MessageReceived
from app.client.linking import LinkRequest
from app.client.relay_api import RelayError
from app.ui.viewmodels import onboarding
from app.ui.viewmodels.connection_banner import ConnectionBanner, Link
from app.ui.viewmodels.onboarding import Onboarding, Step
from storage.custody import MemoryCustody
from storage.custody_accounts import AccountDirectory
from storage.custody_pin import PinLock
from storage.rooms import RoomKind
from tests.engine_support import Watched, enroll, until
from tests.relay_harness import RelayProcess
from tests.test_client_linking import _totp


@pytest.mark.asyncio
async def test_onboarding_enrols_shows_totp_and_sets_a_pin(relay, tmp_path):
    custody = MemoryCustody()
    pins = PinLock(custody, AccountDirectory(tmp_path / "keys"),
                   ops=argon2id.OPSLIMIT_MIN, mem=argon2id.MEMLIMIT_MIN, allow_weak=True)
    enrolled: list[Engine] = []

    async def enroll(url: str, code: str) -> Engine:
        enrolled.append(await Engine.enroll(tmp_path / "phone", url, code, custody))
        return enrolled[-1]

    flow = Onboarding(enroll, _no_link, lambda engine, pin: pins.enable(engine.device_id, pin))
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


async def _no_link(url: str, device_name: str) -> LinkRequest:
    raise AssertionError("the invite path never links")


async def _no_invite(url: str, code: str) -> Engine:
    raise AssertionError("the link path needs no invite")


def _linking(profile: Path, custody: MemoryCustody) -> onboarding.Link:
    async def link(url: str, device_name: str) -> LinkRequest:
        return await Engine.link(profile, url, custody, device_name=device_name)
    return link


async def _code_shown(flow: Onboarding) -> asyncio.Task[None]:
    """The flow's submit_link running, once it shows its code."""
    waiting = asyncio.create_task(flow.submit_link())
    await until(lambda: flow.step is Step.LINK_CODE or waiting.done())
    assert flow.step is Step.LINK_CODE and flow.link_code is not None, flow.error_detail
    return waiting


@pytest.mark.asyncio
async def test_linking_shows_a_code_then_joins_the_users_rooms_with_their_history(
        relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    pins = PinLock(custody, AccountDirectory(tmp_path / "keys"),
                   ops=argon2id.OPSLIMIT_MIN, mem=argon2id.MEMLIMIT_MIN, allow_weak=True)
    flow = Onboarding(_no_invite, _linking(tmp_path / "tablet", custody),
                      lambda engine, pin: pins.enable(engine.device_id, pin), relay.url,
                      device_name="Tablette USIC", wait=60)
    steps: list[Step] = []
    flow.observe(lambda: steps.append(flow.step))
    try:
        room = await alice.engine.create_room(RoomKind.GROUP, "Cardiologie", [])
        for i in range(5):
            await alice.engine.send_text(room, f"transmission {i}")
        await until(lambda: alice.engine.unsent() == 0)

        flow.choose_link()
        waiting = await _code_shown(flow)
        assert flow.busy and flow.link_minutes == 10 and flow.engine is None
        approved = await alice.engine.approve_link(flow.link_code or "", _totp(alice.engine),
                                                   timeout=60)
        await asyncio.wait_for(waiting, 90)

        assert (flow.step, flow.error_key, flow.busy) == (Step.PIN, None, False)
        assert flow.history_count == 5
        linked = flow.engine
        assert linked is not None and linked.device_id == approved.device.id
        assert (linked.user_id, linked.account.device_name) == (alice.engine.user_id,
                                                                "Tablette USIC")
        assert [r.id for r in linked.rooms()] == [room]
        assert [m.body for m in linked.messages(room, limit=10)] == [
            m.body for m in alice.engine.messages(room, limit=10)]
        connection = linked._connection
        await linked.start()  # as the app does: online already, it keeps its one connection
        assert connection is not None and linked._connection is connection
        later = await alice.engine.send_text(room, "après la liaison")
        assert (await Watched(linked).next(MessageReceived, timeout=30)).message.ref == later
        flow.submit_pin("4821", "4821")
        assert flow.step is Step.DONE and pins.is_enabled(linked.device_id)
        assert steps[:4] == [Step.LINK, Step.LINK, Step.LINK_CODE, Step.HISTORY]
        assert steps[-2:] == [Step.PIN, Step.DONE]
    finally:
        for engine in (alice.engine, flow.engine):
            if engine is not None:
                await engine.stop()


def _expire_links(relay: RelayProcess) -> None:
    with sqlite3.connect(relay.data / "relay.db") as conn:
        conn.execute("UPDATE device_links SET expires_at = 0")


@pytest.mark.asyncio
async def test_a_refused_expired_or_cancelled_link_enrols_nothing_and_can_be_retried(
        relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "alice", custody)
    profile = tmp_path / "tablet"
    flow = Onboarding(_no_invite, _linking(profile, custody), lambda engine, pin: None,
                      f"http://127.0.0.1:{relay.port + 1}", device_name="Tablette", wait=2)
    try:
        flow.choose_link()
        await flow.submit_link()  # nothing listens there
        assert (flow.step, flow.error_key) == (Step.LINK, "onboarding.error.unreachable")
        flow.relay_url, flow.device_name = relay.url, "  "
        await flow.submit_link()
        assert flow.error_key == "onboarding.link.error.device_name"

        # a wrong TOTP code on the other device: no approval, the wait ends, nothing enrolled
        flow.device_name = "Tablette"
        waiting = await _code_shown(flow)
        with pytest.raises(RelayError):
            await alice.engine.approve_link(flow.link_code or "", "000000", timeout=5)
        await waiting
        assert (flow.step, flow.error_key, flow.link_code) == (
            Step.LINK, "onboarding.link.error.expired", None)
        assert "in time" in flow.error_detail and not flow.busy

        # the code expired on the relay while shown; the other device can no longer use it
        waiting = await _code_shown(flow)
        code = flow.link_code or ""
        _expire_links(relay)
        await waiting
        assert (flow.step, flow.error_key) == (Step.LINK, "onboarding.link.error.expired")
        assert "expired" in flow.error_detail
        with pytest.raises(RelayError):
            await alice.engine.approve_link(code, _totp(alice.engine), timeout=5)

        # cancelled while waiting: back, at once, and the code no longer approves anything
        waiting = await _code_shown(flow)
        code = flow.link_code or ""
        flow.cancel_link()
        assert (flow.step, flow.error_key, flow.link_code, flow.busy) == (
            Step.LINK, None, None, False)
        await asyncio.wait_for(waiting, 5)
        assert (flow.step, flow.error_key) == (Step.LINK, None)  # the wait did not go on
        assert flow.withdrawal is not None
        await asyncio.wait_for(flow.withdrawal, 5)
        with pytest.raises(RelayError, match="link_invalid"):
            await alice.engine.approve_link(code, _totp(alice.engine), timeout=5)
        flow.choose_invite()
        assert flow.step is Step.ACCOUNT

        assert flow.engine is None and not (profile / "account").exists()
        assert [d.id for d in await alice.engine.devices()] == [alice.engine.device_id]
    finally:
        await alice.engine.stop()


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
