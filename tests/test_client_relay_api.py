"""The engine's REST client against a real relay process."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from app.client.relay_api import RelayClient, RelayError, RelayUnavailable
from crypto.cipher_suite import suite
from crypto.credential import Credential
from crypto.group import create_key_package
from crypto.message import MLSMessage
from protocol import rest
from protocol.problems import Code
from relay import totp
from tests.relay_harness import free_port, running_relay

CHUNK = 16 * 1024


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    with running_relay(tmp_path_factory.mktemp("client_api"), blob_chunk_bytes=CHUNK) as r:
        yield r


async def enrolled(relay, uid: str | None = None, name: str = "Hélène Dubois",
                   *, totp_code: str | None = None) -> tuple[RelayClient, rest.EnrollResponse]:
    """A logged-in client of a freshly enrolled device."""
    seed = os.urandom(32)
    client = RelayClient(relay.url, timeout=10)
    uid = uid or relay.add_user(name, "nurse", "--service", "Cardiologie")
    enrollment = await client.enroll(relay.invite(uid), "test phone", seed, totp=totp_code)
    await client.login(enrollment.device_id, seed)
    return client, enrollment


def key_package(enrollment: rest.EnrollResponse, seed: bytes) -> bytes:
    kp, _ = create_key_package(suite(3), Credential.deserialize(enrollment.credential), seed)
    return MLSMessage(kp).serialize()


@pytest.mark.asyncio
async def test_enroll_second_device_with_totp_and_list_devices(relay):
    alice, first = await enrolled(relay)
    assert first.totp_uri and first.totp_uri.startswith("otpauth://totp/")
    code = relay.invite(first.user_id)
    async with RelayClient(relay.url) as second:
        with pytest.raises(RelayError) as e:
            await second.enroll(code, "tablet", os.urandom(32))
        assert e.value.code is Code.TOTP_REQUIRED and e.value.status == 403
        now_code = totp.code_at(totp.b32_secret(first.totp_uri), int(time.time() // 30))
        seed = os.urandom(32)
        tablet = await second.enroll(code, "tablet", seed, totp=now_code)
        assert tablet.user_id == first.user_id and tablet.totp_uri is None
        token = await second.login(tablet.device_id, seed)
        assert token.user_id == first.user_id
        # the invite was consumed: a stale invite is a typed refusal
        with pytest.raises(RelayError) as e:
            await second.enroll(code, "phone", os.urandom(32), totp=now_code)
        assert e.value.code is Code.INVITE_INVALID
    async with alice:
        assert (await alice.me()).id == first.user_id
        mine = await alice.my_devices()
        assert {d.id for d in mine.devices} == {first.device_id, tablet.device_id}
        assert len((await alice.user_devices(first.user_id)).devices) == 2
        await alice.revoke_device(tablet.device_id)
        assert [d.id for d in (await alice.user_devices(first.user_id)).devices] == [
            first.device_id]


@pytest.mark.asyncio
async def test_expired_token_logs_in_again_once(relay):
    client, enrollment = await enrolled(relay)
    async with client:
        client.token = "expired-token"
        assert (await client.me()).id == enrollment.user_id
        assert client.token != "expired-token"
    async with RelayClient(relay.url) as anonymous:  # no key to log in with: refused
        with pytest.raises(RelayError) as e:
            await anonymous.me()
        assert e.value.code is Code.UNAUTHENTICATED


@pytest.mark.asyncio
async def test_directory_search_and_paging(relay):
    client, _ = await enrolled(relay, name="Zoé Marchand")
    for name in ("Zacharie Martin", "Zélie Moreau"):
        relay.add_user(name, "physician", "--service", "Urgences")
    async with client:
        page = await client.directory("z")
        assert {u.display_name for u in page.users} >= {
            "Zoé Marchand", "Zacharie Martin", "Zélie Moreau"}
        doctors = await client.directory("z", profession=rest.Profession.PHYSICIAN)
        assert {u.display_name for u in doctors.users} == {"Zacharie Martin", "Zélie Moreau"}
        first = await client.directory("z", service="Urgences", limit=1)
        assert first.next_cursor is not None
        rest_ = await client.directory("z", service="Urgences", limit=1,
                                       cursor=first.next_cursor)
        assert {first.users[0].display_name, rest_.users[0].display_name} == {
            "Zacharie Martin", "Zélie Moreau"}


@pytest.mark.asyncio
async def test_key_packages_upload_count_and_claim(relay):
    seed = os.urandom(32)
    async with RelayClient(relay.url) as bob, RelayClient(relay.url) as alice:
        bob_enrollment = await bob.enroll(relay.invite(relay.add_user("Bob")), "phone", seed)
        await bob.login(bob_enrollment.device_id, seed)
        count = await bob.upload_key_packages([key_package(bob_enrollment, seed)],
                                              last_resort=key_package(bob_enrollment, seed))
        assert count == rest.KeyPackageCount(available=1, last_resort=True)
        assert await bob.key_package_count() == count
        alice_seed = os.urandom(32)
        alice_enrollment = await alice.enroll(relay.invite(relay.add_user("Alice")), "phone",
                                              alice_seed)
        await alice.login(alice_enrollment.device_id, alice_seed)
        claimed = await alice.claim_key_packages([bob_enrollment.device_id])
        assert [(k.device_id, k.last_resort) for k in claimed.key_packages] == [
            (bob_enrollment.device_id, False)]
        with pytest.raises(RelayError) as e:  # nothing to claim from Alice
            await bob.claim_key_packages([alice_enrollment.device_id])
        assert e.value.code is Code.NO_KEY_PACKAGE
        with pytest.raises(RelayError) as e:
            await bob.upload_key_packages([b"not a key package"])
        assert e.value.code is Code.KEY_PACKAGE_INVALID


@pytest.mark.asyncio
async def test_group_and_blob_upload_then_resumed_download(relay):
    client, enrollment = await enrolled(relay)
    group_id = os.urandom(16)
    data = os.urandom(3 * CHUNK + 123)
    async with client:
        info = await client.create_group(group_id)
        assert info.members == [enrollment.device_id]
        assert await client.group(group_id) == info
        with pytest.raises(RelayError) as e:
            await client.create_group(group_id)
        assert e.value.code is Code.GROUP_EXISTS
        blob = await client.create_blob(group_id, len(data), hashlib.sha256(data).digest())
        assert blob.chunk_size == CHUNK and blob.stored == 0
        # an interrupted upload: one chunk, then resume from the status
        await client.put_blob_chunk(blob.blob_id, 0, data[:CHUNK])
        status = await client.blob_status(blob.blob_id)
        assert status.stored == CHUNK and not status.complete
        with pytest.raises(RelayError) as e:
            await client.put_blob_chunk(blob.blob_id, 0, data[:CHUNK])
        assert e.value.code is Code.BLOB_OFFSET
        offset = status.stored
        while offset < len(data):
            status = await client.put_blob_chunk(blob.blob_id, offset,
                                                 data[offset:offset + CHUNK])
            offset = status.stored
        assert status.complete
        whole = b"".join([piece async for piece in client.download_blob(blob.blob_id)])
        assert whole == data
        kept = 2 * CHUNK + 7  # a download cut there resumes with a Range request
        tail = b"".join([p async for p in client.download_blob(blob.blob_id, start=kept)])
        assert data[:kept] + tail == data
        with pytest.raises(RelayError) as e:
            async for _ in client.download_blob(blob.blob_id, start=len(data)):
                pass
        assert e.value.code is Code.RANGE_INVALID


@pytest.mark.asyncio
async def test_unreachable_relay_is_unavailable():
    async with RelayClient(f"http://127.0.0.1:{free_port()}", timeout=2) as client:
        with pytest.raises(RelayUnavailable):
            await client.directory("x")
