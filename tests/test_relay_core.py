"""The relay as a real process: enrollment, login, KeyPackages, ordering, fan-out, backlog."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from crypto.cipher_suite import suite
from crypto.credential import Credential
from crypto.group import create_key_package
from crypto.message import MLSMessage
from protocol.encoding import b64encode
from relay import totp
from tests.relay_harness import (
    Device,
    make_group,
    new_device,
    postgres_available,
    postgres_database,
    running_relay,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def relay(request, tmp_path):
    """Every scenario runs on the embedded SQLite and on a PostgreSQL database of its own."""
    if request.param == "sqlite":
        with running_relay(tmp_path) as r:
            yield r
        return
    if not postgres_available():
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    with postgres_database() as url, running_relay(tmp_path, db=url) as r:
        yield r


def test_enroll_login_and_totp_for_second_device(relay):
    uid = relay.add_user("Hélène Dubois", "nurse", "--service", "Cardiologie")
    first = Device(relay, os.urandom(32))
    r = first.enroll(relay.invite(uid))
    assert r.status_code == 200, r.text
    assert first.totp_uri and first.totp_uri.startswith("otpauth://totp/")
    cred = Credential.deserialize(first.credential)
    assert cred.credential_type == 0xF0A1
    assert first.login().status_code == 200
    # a second device needs the TOTP code
    second = Device(relay, os.urandom(32))
    code = relay.invite(uid)
    r = second.enroll(code)
    assert r.status_code == 403 and r.json()["code"] == "totp_required"
    r = second.enroll(code, totp="000000")
    assert r.status_code == 403 and r.json()["code"] == "totp_invalid"
    secret = totp.b32_secret(first.totp_uri)
    import time
    r = second.enroll(code, totp=totp.code_at(secret, int(time.time() // 30)))
    assert r.status_code == 200, r.text
    # the invite is one-time
    third = Device(relay, os.urandom(32))
    r = third.enroll(code)
    assert r.status_code == 403 and r.json()["code"] == "invite_invalid"


def test_login_with_wrong_key_fails_and_is_rate_limited(relay):
    dev = new_device(relay)
    impostor = Device(relay, os.urandom(32), device_id=dev.device_id)
    codes = [impostor.login().status_code for _ in range(12)]
    assert codes[0] == 401 and 429 in codes
    with dev.http() as c:
        assert c.get("/v1/me").status_code == 200
    with impostor.http() as c:
        r = c.get("/v1/me")
    assert r.status_code == 401 and r.headers["content-type"].startswith(
        "application/problem+json")


def _key_package(dev: Device) -> str:
    cs = suite(3)
    kp, _ = create_key_package(cs, Credential.deserialize(dev.credential), dev.seed)
    return b64encode(MLSMessage(kp).serialize())


def test_key_package_claim_is_one_time_with_last_resort(relay):
    alice, bob = new_device(relay), new_device(relay)
    with bob.http() as c:
        r = c.post("/v1/keypackages", json={"key_packages": [_key_package(bob)],
                                            "last_resort": _key_package(bob)})
        assert r.status_code == 200 and r.json() == {"available": 1, "last_resort": True}
        # someone else's KeyPackage is refused
        r = c.post("/v1/keypackages", json={"key_packages": [_key_package(alice)]})
        assert r.status_code == 422 and r.json()["code"] == "key_package_invalid"
    with alice.http() as c:
        first = c.post("/v1/keypackages/claim", json={"device_ids": [bob.device_id]}).json()
        second = c.post("/v1/keypackages/claim", json={"device_ids": [bob.device_id]}).json()
        third = c.post("/v1/keypackages/claim", json={"device_ids": [bob.device_id]}).json()
    assert first["key_packages"][0]["last_resort"] is False
    assert second["key_packages"][0]["last_resort"] is True
    assert third["key_packages"][0]["key_package"] == second["key_packages"][0]["key_package"]


def test_commit_ordering_fan_out_and_idempotent_resend(relay):
    async def scenario() -> None:
        alice, bob, carol = (new_device(relay) for _ in range(3))
        for d in (alice, bob, carol):
            await d.connect()
        gid = await make_group(alice, [bob, carol])
        for d in (bob, carol):
            await d.pump(lambda d: any(f["envelope"]["kind"] == "welcome"
                                       for f in d.received if f["type"] == "deliver"))
        # two members commit on epoch 1 at once: exactly one wins
        for d, cid in ((bob, "b1"), (carol, "k1")):
            await d.send_frame({"type": "commit", "id": cid, "group_id": gid, "epoch": 1,
                                "payload": b64encode(cid.encode())})
        await bob.pump(lambda d: "b1" in d.answers)
        await carol.pump(lambda d: "k1" in d.answers)
        results = {bob.answers["b1"]["type"], carol.answers["k1"]["type"]}
        assert results == {"accepted", "refused"}
        loser = bob if bob.answers["b1"]["type"] == "refused" else carol
        problem = loser.answers["b1" if loser is bob else "k1"]["problem"]
        assert problem["code"] == "stale_epoch" and problem["epoch"] == 2
        # application message fans out to every other member device
        await alice.send_frame({"type": "send", "id": "m1", "group_id": gid,
                                "payload": b64encode(b"ciphertext-1")})
        await alice.pump(lambda d: "m1" in d.answers)
        # resending the same id is harmless
        await alice.send_frame({"type": "send", "id": "m1", "group_id": gid,
                                "payload": b64encode(b"ciphertext-1")})
        await alice.pump(lambda d: d.answers["m1"]["type"] == "accepted")
        for d in (bob, carol):
            await d.pump(lambda d: any(f["envelope"]["id"] == "m1" for f in d.received
                                       if f["type"] == "deliver"))
        await asyncio.sleep(0.3)
        for d in (bob, carol):
            await d.pump(lambda d: True)
            ids = [f["envelope"]["id"] for f in d.received if f["type"] == "deliver"]
            assert ids.count("m1") == 1
        assert not any(f["type"] == "deliver" and f["envelope"]["id"] == "m1"
                       for f in alice.received)
        for d in (alice, bob, carol):
            await d.close()

    asyncio.run(scenario())


def test_offline_backlog_survives_restart(relay):
    async def send_phase() -> tuple[Device, Device, str]:
        alice, bob = new_device(relay), new_device(relay)
        await alice.connect()
        await bob.connect()
        gid = await make_group(alice, [bob])
        await bob.close()
        for i in range(25):
            await alice.send_frame({"type": "send", "id": f"m{i}", "group_id": gid,
                                    "payload": b64encode(f"secret-{i}".encode())})
        await alice.pump(lambda d: all(f"m{i}" in d.answers for i in range(25)))
        await alice.close()
        return alice, bob, gid

    _, bob, _ = asyncio.run(send_phase())
    relay.stop()
    relay.start()

    async def receive_phase() -> None:
        assert bob.login().status_code == 200
        await bob.connect()
        await bob.pump(lambda d: sum(f["type"] == "deliver" and f["envelope"]["kind"] ==
                                     "application" for f in d.received) == 25)
        ids = [f["envelope"]["id"] for f in bob.received
               if f["type"] == "deliver" and f["envelope"]["kind"] == "application"]
        assert ids == [f"m{i}" for i in range(25)]
        seqs = [f["seq"] for f in bob.received]
        assert seqs == sorted(seqs)
        await bob.ack_all()
        await asyncio.sleep(0.3)
        await bob.close()
        # acknowledged entries are gone: a new connection gets nothing
        bob.received.clear()
        await bob.connect()
        with pytest.raises(AssertionError):
            await bob.pump(lambda d: len(d.received) > 0, timeout=1.0)
        await bob.close()

    asyncio.run(receive_phase())


def test_revocation_cuts_a_live_connection(relay):
    async def scenario() -> None:
        alice = new_device(relay)
        bob = new_device(relay)
        await alice.connect()
        await bob.connect()
        gid = await make_group(alice, [bob])
        with alice.http() as c:
            r = c.delete(f"/v1/devices/{bob.device_id}")
        assert r.status_code == 403  # not bob's user, not an admin
        with bob.http() as c:
            assert c.delete(f"/v1/devices/{bob.device_id}").status_code == 204
        await bob.pump(lambda d: any(f["type"] == "revoked" for f in d.received))
        with pytest.raises(Exception):  # noqa: B017 - the relay closes the socket
            await bob.pump(lambda d: False, timeout=3)
        with bob.http() as c:
            assert c.get("/v1/me").status_code == 401
        await alice.pump(lambda d: any(f["type"] == "deliver" and
                                       f["envelope"]["kind"] == "notice" for f in d.received))
        with alice.http() as c:
            from protocol.encoding import b64decode
            members = c.get(f"/v1/groups/{gid}").json()["members"]
        assert bob.device_id not in members and b64decode(gid)
        await alice.close()

    asyncio.run(scenario())


def test_frames_travel_together_each_answered_and_a_malformed_one_refused_alone(relay):
    async def scenario() -> None:
        alice, bob = new_device(relay), new_device(relay)
        await alice.connect()
        await bob.connect()
        gid = await make_group(alice, [bob])
        await bob.pump(lambda d: any(f["type"] == "deliver" for f in d.received))
        await bob.ack_all()
        await bob.close()
        frames = [{"type": "send", "id": "m1", "group_id": gid, "payload": b64encode(b"c-1")},
                  {"type": "send", "id": "no-payload", "group_id": gid},
                  {"type": "send", "id": "m2", "group_id": gid, "payload": b64encode(b"c-2")}]
        await alice.ws.send(json.dumps(frames))
        await alice.pump(lambda d: {"m1", "m2", "?"} <= set(d.answers))
        assert alice.answers["m1"]["type"] == alice.answers["m2"]["type"] == "accepted"
        assert alice.answers["?"]["problem"]["code"] == "validation_failed"
        # Bob's backlog comes back as one message: both entries, in order, nothing else.
        assert bob.login().status_code == 200
        await bob.connect()
        await asyncio.sleep(0.3)
        message = json.loads(await asyncio.wait_for(bob.ws.recv(), 5))
        assert [f["envelope"]["id"] for f in message] == ["m1", "m2"]
        for d in (alice, bob):
            await d.close()

    asyncio.run(scenario())
