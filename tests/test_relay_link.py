"""Device linking on the real relay: a short code approved with TOTP, device-addressed blobs."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crypto.primitives import ed25519_public, ed25519_sign
from protocol.auth import link_proof_message
from protocol.encoding import b64decode, b64encode
from relay import totp
from tests.relay_harness import (
    Device,
    RelayProcess,
    new_device,
    postgres_available,
    postgres_database,
    running_relay,
)

LIMIT = 4  # failed attempts per window, kept small to reach it


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    """On SQLite, whose files the tests read directly."""
    with running_relay(tmp_path, auth_failures_per_window=LIMIT) as r:
        yield r


@pytest.fixture(params=["sqlite", "postgresql"])
def any_relay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RelayProcess]:
    """On SQLite and on a PostgreSQL database of its own (migration 0002 on both)."""
    if request.param == "sqlite":
        with running_relay(tmp_path, auth_failures_per_window=LIMIT) as r:
            yield r
        return
    if not postgres_available():
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    with postgres_database() as url, running_relay(tmp_path, db=url,
                                                   auth_failures_per_window=LIMIT) as r:
        yield r


def _totp(device: Device) -> str:
    assert device.totp_uri is not None
    return totp.code_at(totp.b32_secret(device.totp_uri), int(time.time() // totp.STEP))


def _wrong_totp(device: Device) -> str:
    right = {totp.code_at(totp.b32_secret(device.totp_uri or ""), int(time.time() // 30) + d)
             for d in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in right)


class Pending:
    """A new device that asked to be linked: its keys, its link id and its code."""

    def __init__(self, relay: RelayProcess, name: str = "phone 2") -> None:
        self.relay = relay
        self.seed, self.box = os.urandom(32), os.urandom(32)
        key = ed25519_public(self.seed)
        body = {"device_name": name, "signature_key": b64encode(key),
                "box_key": b64encode(self.box),
                "proof": b64encode(ed25519_sign(self.seed, link_proof_message(key, self.box)))}
        r = httpx.post(relay.url + "/v1/link", json=body)
        assert r.status_code == 200, r.text
        self.link_id, self.code = r.json()["link_id"], r.json()["code"]

    def status(self) -> httpx.Response:
        return httpx.get(f"{self.relay.url}/v1/link/{self.link_id}")

    def approved(self) -> bool:
        j = self.status().json()
        return j["approved"] and j["enrollment"] is not None

    def as_device(self) -> Device:
        """The linked device, logged in with the id its approved status names."""
        j = self.status().json()
        dev = Device(self.relay, self.seed, user_id=j["enrollment"]["user_id"],
                     device_id=j["enrollment"]["device_id"])
        assert dev.login().status_code == 200
        return dev


def _audit_events(relay: RelayProcess) -> list[str]:
    with sqlite3.connect(relay.data / "relay.db") as conn:
        return [row[0] for row in conn.execute("SELECT event FROM audit ORDER BY seq")]


def _approve(approver: Device, code: str, totp_code: str) -> httpx.Response:
    with approver.http() as c:
        return c.post("/v1/link/approve", json={"code": code, "totp": totp_code})


def test_code_approved_with_totp_links_a_device_of_the_approvers_user(relay):
    first = new_device(relay, name="Alice")
    pending = Pending(relay)
    code = pending.code
    assert len(code) == 9 and code[4] == "-"
    assert not set(code.replace("-", "")) & set("01OIL")
    assert not pending.approved()

    r = _approve(first, code.lower().replace("-", ""), _totp(first))  # typed loosely: accepted
    assert r.status_code == 200, r.text
    approved = r.json()
    new_id = approved["device"]["id"]
    assert approved["device"]["user_id"] == first.user_id
    assert approved["device"]["name"] == "phone 2"
    assert b64decode(approved["device"]["signature_key"]) == ed25519_public(pending.seed)
    assert b64decode(approved["box_key"]) == pending.box

    status = pending.status().json()
    assert status["approved"] and status["approved_by"] == first.device_id
    assert status["enrollment"]["device_id"] == new_id
    assert status["enrollment"]["user_id"] == first.user_id
    assert status["history"] is None
    linked = pending.as_device()
    with linked.http() as c:
        mine = {d["id"] for d in c.get("/v1/devices").json()["devices"]}
    assert mine == {first.device_id, new_id}

    # used once: the same code links nothing more
    r = _approve(first, code, _totp(first))
    assert r.status_code == 403 and r.json()["code"] == "link_invalid"
    deadline = time.monotonic() + 10  # a refusal is audited on its own, just after
    while "link_refused" not in (events := _audit_events(relay)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "device_linked" in events and "link_refused" in events
    with sqlite3.connect(relay.data / "relay.db") as conn:
        stored = conn.execute("SELECT code_hash FROM device_links").fetchall()
    assert code.encode() not in b"".join(row[0] for row in stored)


def test_wrong_totp_is_refused_and_counted_until_rate_limited(any_relay):
    relay = any_relay
    first = new_device(relay, name="Alice")
    pending = Pending(relay)
    for _ in range(LIMIT):
        r = _approve(first, pending.code, _wrong_totp(first))
        assert r.status_code == 403 and r.json()["code"] == "totp_invalid"
    assert not pending.approved()
    r = _approve(first, pending.code, _totp(first))  # right at last, but too late
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    assert not pending.approved()


def test_unknown_and_expired_codes_and_links(relay):
    first = new_device(relay, name="Alice")
    r = _approve(first, "ABCD-EFGH", _totp(first))
    assert r.status_code == 403 and r.json()["code"] == "link_invalid"
    r = _approve(first, "no", _totp(first))
    assert r.status_code == 422
    assert httpx.get(f"{relay.url}/v1/link/{'x' * 43}").status_code == 404

    pending = Pending(relay)
    with sqlite3.connect(relay.data / "relay.db") as conn:  # ten minutes later
        conn.execute("UPDATE device_links SET expires_at = ?", (time.time() - 1,))
    assert pending.status().status_code == 404
    r = _approve(first, pending.code, _totp(first))
    assert r.status_code == 403 and r.json()["code"] == "link_invalid"


def test_a_withdrawn_code_stops_working_at_once_but_an_approved_one_stays(relay):
    first = new_device(relay, name="Alice")
    cancelled = Pending(relay)
    assert httpx.delete(f"{relay.url}/v1/link/{cancelled.link_id}").status_code == 204
    assert cancelled.status().status_code == 404
    r = _approve(first, cancelled.code, _totp(first))
    assert r.status_code == 403 and r.json()["code"] == "link_invalid"
    assert httpx.delete(f"{relay.url}/v1/link/{cancelled.link_id}").status_code == 404

    approved = Pending(relay, name="phone 3")
    assert _approve(first, approved.code, _totp(first)).status_code == 200
    r = httpx.delete(f"{relay.url}/v1/link/{approved.link_id}")
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    assert approved.approved()  # still there to finish linking


def test_bad_proof_is_refused(relay):
    seed, box = os.urandom(32), os.urandom(32)
    key = ed25519_public(seed)
    other_box = os.urandom(32)  # the proof binds the box key: another one does not verify
    body = {"device_name": "x", "signature_key": b64encode(key), "box_key": b64encode(box),
            "proof": b64encode(ed25519_sign(seed, link_proof_message(key, other_box)))}
    r = httpx.post(relay.url + "/v1/link", json=body)
    assert r.status_code == 422 and r.json()["code"] == "signature_invalid"


def test_a_device_of_another_user_links_to_its_own_user_only(any_relay):
    relay = any_relay
    alice = new_device(relay, name="Alice")
    bob = new_device(relay, name="Bob")
    pending = Pending(relay)  # Alice's new phone, she thinks
    r = _approve(bob, pending.code, _totp(alice))  # Alice's TOTP is not Bob's
    assert r.status_code == 403 and r.json()["code"] == "totp_invalid"
    r = _approve(bob, pending.code, _totp(bob))
    assert r.status_code == 200
    assert r.json()["device"]["user_id"] == bob.user_id  # Bob's device, never Alice's
    with alice.http() as c:
        assert len(c.get("/v1/devices").json()["devices"]) == 1


def test_history_blob_is_for_the_linked_device_only(any_relay):
    relay = any_relay
    alice = new_device(relay, name="Alice")
    bob = new_device(relay, name="Bob")
    pending = Pending(relay)
    new_id = _approve(alice, pending.code, _totp(alice)).json()["device"]["id"]
    linked = pending.as_device()
    data = os.urandom(3000)
    sha = b64encode(hashlib.sha256(data).digest())

    with bob.http() as c:  # not Bob's device: no mailbox for other users
        r = c.post("/v1/blobs", json={"recipient_device": new_id, "size": 10, "sha256": sha})
        assert r.status_code == 403
    with alice.http() as c:
        r = c.post("/v1/blobs", json={"size": 10, "sha256": sha})
        assert r.status_code == 422  # neither a group nor a device
        r = c.post("/v1/blobs", json={"recipient_device": new_id, "size": len(data),
                                      "sha256": sha})
        assert r.status_code == 201, r.text
        blob_id = r.json()["blob_id"]
        pointer = {"device_id": new_id, "blob_id": blob_id, "sealed_key": b64encode(b"k" * 80)}
        r = c.put("/v1/link/history", json=pointer)  # not complete yet
        assert r.status_code == 422
        r = c.put(f"/v1/blobs/{blob_id}/content", params={"offset": 0}, content=data,
                  headers={"content-type": "application/octet-stream"})
        assert r.json()["complete"]
    with bob.http() as c:
        assert c.put("/v1/link/history", json=pointer).status_code == 404  # not the approver
        assert c.get(f"/v1/blobs/{blob_id}/content").status_code == 404
    with alice.http() as c:
        assert c.put("/v1/link/history", json=pointer).status_code == 204
    with linked.http() as c:
        assert c.get(f"/v1/blobs/{blob_id}/content").content == data
    history = pending.status().json()["history"]
    assert history == pointer
