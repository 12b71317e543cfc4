"""Security invariants: after a realistic exchange, the relay's database and logs hold no
message body, file name, room name or patient identifier.

The devices use the real MLS core over the real relay: KeyPackages published and claimed,
a room created by commit + Welcome with its state (name, patient) inside the group, and
encrypted messages. Then every byte the relay wrote is scanned for the markers.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

from crypto.cipher_suite import suite
from crypto.credential import Credential, organisation_validator
from crypto.document import DocumentKey, encrypt_stream
from crypto.extensions import LIAISON_ROOM_STATE, Extension
from crypto.group import Group, create_key_package
from crypto.message import MLSMessage
from protocol.encoding import b64decode, b64encode
from tests.relay_harness import Device, new_device, running_relay

ROOM_NAME = "Chambre-412-Cardio-MARKER-ROOM"
PATIENT_INS = "1840375123456-MARKER-INS"  # synthetic, INS test OID urn:oid:1.2.250.1.213.1.4.10
PATIENT_NAME = "DUPONTMARKER Jeanne"
BODY = "Kaliemie 6,8 MARKER-BODY appeler l'interne"
FILE_NAME = "compte-rendu-MARKER-FILE.pdf"
MARKERS = [ROOM_NAME, PATIENT_INS, PATIENT_NAME, BODY, FILE_NAME, "MARKER"]


def _mls(dev: Device):
    cs = suite(3)
    return cs, Credential.deserialize(dev.credential), organisation_validator(
        dev.organisation_key)


async def _exchange(alice: Device, bob: Device) -> None:
    cs, cred_a, validator = _mls(alice)
    _, cred_b, _ = _mls(bob)
    kp, kp_secrets = create_key_package(cs, cred_b, bob.seed)
    with bob.http() as c:
        assert c.post("/v1/keypackages", json={
            "key_packages": [b64encode(MLSMessage(kp).serialize())]}).status_code == 200
    with alice.http() as c:
        claimed = c.post("/v1/keypackages/claim",
                         json={"device_ids": [bob.device_id]}).json()["key_packages"][0]
    bob_kp = MLSMessage.deserialize(b64decode(claimed["key_package"])).body
    gid = os.urandom(16)
    with alice.http() as c:
        assert c.post("/v1/groups", json={"group_id": b64encode(gid)}).status_code == 201
    room = Group.create(cs, gid, cred_a, alice.seed, validator)
    state = json.dumps({"kind": "patient", "name": ROOM_NAME,
                        "patient": {"ins": PATIENT_INS, "name": PATIENT_NAME,
                                    "system": "urn:oid:1.2.250.1.213.1.4.10"}}).encode()
    pending = room.commit(add=[bob_kp],  # type: ignore[list-item]
                          extensions=[Extension(LIAISON_ROOM_STATE, state)])
    await alice.send_frame({"type": "commit", "id": "c1", "group_id": b64encode(gid),
                            "epoch": 0, "payload": b64encode(pending.message),
                            "welcome": b64encode(pending.welcome or b""),
                            "add_devices": [bob.device_id]})
    await alice.pump(lambda d: "c1" in d.answers)
    assert alice.answers["c1"]["type"] == "accepted"
    room.apply(pending)
    await bob.pump(lambda d: any(f["envelope"]["kind"] == "welcome" for f in d.received))
    welcome = next(f for f in bob.received if f["envelope"]["kind"] == "welcome")
    bob_room = Group.join(b64decode(welcome["envelope"]["payload"]), bob_kp,  # type: ignore[arg-type]
                          kp_secrets, validator)
    from crypto.extensions import find

    assert find(bob_room.context.extensions, LIAISON_ROOM_STATE) == state
    blob_id, doc_key = _upload_document(alice, gid)
    note = json.dumps({"text": BODY, "attachment": {
        "name": FILE_NAME, "blob": blob_id, "key": doc_key.key.hex(),
        "sha256": doc_key.ciphertext_sha256.hex()}}).encode()
    await alice.send_frame({"type": "send", "id": "m1", "group_id": b64encode(gid),
                            "payload": b64encode(room.encrypt(note))})
    await bob.pump(lambda d: any(f["envelope"]["id"] == "m1" for f in d.received
                                 if f["type"] == "deliver"))
    frame = next(f for f in bob.received if f["envelope"]["id"] == "m1")
    event = bob_room.process(b64decode(frame["envelope"]["payload"]))
    assert event.data == note  # type: ignore[union-attr]


def _upload_document(dev: Device, gid: bytes) -> tuple[str, DocumentKey]:
    """A report whose text carries the markers, encrypted on the device, then uploaded."""
    report = (f"%PDF-1.4 Compte rendu {PATIENT_NAME} INS {PATIENT_INS}: {BODY}\n" * 200)
    cipher = io.BytesIO()
    key = encrypt_stream(io.BytesIO(report.encode()), cipher)
    data = cipher.getvalue()
    with dev.http() as c:
        r = c.post("/v1/blobs", json={"group_id": b64encode(gid), "size": len(data),
                                      "sha256": b64encode(key.ciphertext_sha256)})
        assert r.status_code == 201, r.text
        status = r.json()
        step = status["chunk_size"]
        for off in range(0, len(data), step):
            r = c.put(f"/v1/blobs/{status['blob_id']}/content", params={"offset": off},
                      content=data[off:off + step],
                      headers={"content-type": "application/octet-stream"})
            assert r.status_code == 200, r.text
        assert r.json()["complete"] is True
    return status["blob_id"], key


def _scan(root: Path) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for m in MARKERS:
            for form in {m, m.lower(), m.upper()}:
                if form.encode() in data or form.encode("utf-16-le") in data:
                    hits.append(f"{path.name}: {m}")
    return hits


def test_relay_stores_and_logs_no_plaintext(tmp_path):
    with running_relay(tmp_path) as relay:
        alice, bob = new_device(relay, name="Dr Alice Martin", profession="physician"), \
            new_device(relay)

        async def scenario() -> None:
            await alice.connect()
            await bob.connect()
            await _exchange(alice, bob)
            await bob.ack_all()
            await asyncio.sleep(0.3)
            await alice.close()
            await bob.close()

        asyncio.run(scenario())
        hits_live = _scan(relay.data)
    # after shutdown too (WAL checkpointed into the main file)
    hits = _scan(relay.data) + hits_live
    assert (relay.data / "relay.db").exists() and (relay.data / "logs").is_dir()
    assert any((relay.data / "blobs").iterdir())  # the document was scanned too
    assert hits == [], hits
