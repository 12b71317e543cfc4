"""Linking a new device to a user without an invite: a short code approved with TOTP.

The new device registers its keys and gets a short code plus a secret link id; the user types
the code and a TOTP code on one of their existing devices, which creates the new device for
that same user (the code alone names no user, so it can link only to the approver's). The new
device polls with its link id; the approver leaves it a pointer to its history, an archive
blob addressed to the new device whose key is sealed to the new device's X25519 key. The
relay keeps only hashes of the code and link id, and never sees the archive's key.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from fastapi import APIRouter, Response
from sqlalchemy import delete, insert, select, update

from crypto.primitives import ed25519_verify
from protocol import rest
from protocol.auth import link_proof_message
from protocol.problems import Code
from relay import totp
from relay.db import blobs, device_links, devices, users
from relay.deps import AddressDep, DeviceDep, RelayDep
from relay.errors import ProblemError
from relay.ids import new_id
from relay.routes_accounts import device_model
from relay.writer import Tx

router = APIRouter(prefix="/v1/link", tags=["accounts"])

LINK_TTL_SECONDS = 600  # to type the code on another device
HISTORY_TTL_SECONDS = 86_400  # once approved: for the history pointer to be left and fetched
# No 0/O, 1/I/L: a code read aloud or copied from one screen to another must not be misread.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8


def new_code() -> str:
    code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return f"{code[:4]}-{code[4:]}"


def code_hash(code: str) -> bytes:
    normal = code.replace("-", "").replace(" ", "").upper()
    return hashlib.sha256(b"liaison-link-code\x00" + normal.encode()).digest()


def link_hash(link_id: str) -> bytes:
    return hashlib.sha256(b"liaison-link-id\x00" + link_id.encode()).digest()


def _invalid() -> ProblemError:
    return ProblemError(403, Code.LINK_INVALID, "link code unknown, expired or already used")


@router.post("", response_model=rest.LinkStarted)
async def start(body: rest.LinkStart, relay: RelayDep, address: AddressDep) -> rest.LinkStarted:
    """Unauthenticated, so every request counts against its address (on a key of its own:
    linking devices must not lock the address out of logging in)."""
    relay.limiter.check(f"link-start:{address}")
    relay.limiter.fail(f"link-start:{address}")
    if len(body.signature_key) != 32 or len(body.box_key) != 32 or not ed25519_verify(
            body.signature_key, link_proof_message(body.signature_key, body.box_key),
            body.proof):
        raise ProblemError(422, Code.SIGNATURE_INVALID, "proof of key possession is invalid")
    link_id, code = secrets.token_urlsafe(32), new_code()

    async def op(tx: Tx) -> None:
        await tx.conn.execute(delete(device_links).where(device_links.c.expires_at < tx.now))
        await tx.conn.execute(insert(device_links).values(
            id_hash=link_hash(link_id), code_hash=code_hash(code), device_name=body.device_name,
            signature_key=body.signature_key, box_key=body.box_key, proof=body.proof,
            created_at=tx.now, expires_at=tx.now + LINK_TTL_SECONDS))

    await relay.writer.run(op)
    return rest.LinkStarted(link_id=link_id, code=code, expires_in=LINK_TTL_SECONDS)


@router.post("/approve", response_model=rest.LinkApproved)
async def approve(body: rest.LinkApprove, device: DeviceDep, relay: RelayDep,
                  address: AddressDep) -> rest.LinkApproved:
    """Create the waiting device for the approver's own user, as enrolment would."""
    keys = f"user:{device.user_id}", f"addr:{address}"
    relay.limiter.check(*keys)

    async def op(tx: Tx) -> rest.LinkApproved:
        link = (await tx.conn.execute(select(device_links).where(
            device_links.c.code_hash == code_hash(body.code)))).first()
        if link is None or link.device_id is not None or link.expires_at < tx.now:
            raise _invalid()
        user = (await tx.conn.execute(select(users).where(users.c.id == device.user_id))).one()
        if user.totp_secret is None or totp.verify(
                totp.unseal(relay.totp_key, user.totp_secret), body.totp, time.time()) is None:
            raise ProblemError(403, Code.TOTP_INVALID, "TOTP code is wrong")
        exists = (await tx.conn.execute(select(devices.c.id).where(
            devices.c.signature_key == link.signature_key))).first()
        if exists is not None:
            raise ProblemError(409, Code.CONFLICT, "this signature key is already enrolled")
        device_id = new_id("d_")
        credential = relay.org_key.attest(user.id, device_id, link.signature_key).serialize()
        await tx.conn.execute(insert(devices).values(
            id=device_id, user_id=user.id, name=link.device_name,
            signature_key=link.signature_key, credential=credential, created_at=tx.now,
            revocation_handled=False))
        await tx.conn.execute(update(device_links).where(
            device_links.c.id_hash == link.id_hash).values(
            device_id=device_id, approved_by=device.device_id,
            expires_at=tx.now + HISTORY_TTL_SECONDS))
        tx.audit("device_linked", user_id=user.id, device_id=device_id,
                 by_device=device.device_id)
        relay.device_user[device_id] = user.id
        tx.on_rollback(lambda: relay.device_user.pop(device_id, None))
        row = (await tx.conn.execute(select(devices).where(devices.c.id == device_id))).one()
        return rest.LinkApproved(device=device_model(row), box_key=link.box_key, proof=link.proof)

    try:
        return await relay.writer.run(op)
    except ProblemError as e:
        if e.code in (Code.LINK_INVALID, Code.TOTP_INVALID):  # guessing codes or TOTP
            relay.limiter.fail(*keys)
            relay.audit_only("link_refused", user_id=device.user_id, device_id=device.device_id,
                             reason=e.code.value)
        raise


@router.put("/history", status_code=204)
async def leave_history(body: rest.LinkHistory, device: DeviceDep,
                        relay: RelayDep) -> Response:
    """Only the approving device, and only with a complete blob addressed to the new one."""

    async def op(tx: Tx) -> None:
        link = (await tx.conn.execute(select(device_links).where(
            device_links.c.device_id == body.device_id))).first()
        if link is None or link.approved_by != device.device_id or link.expires_at < tx.now:
            raise ProblemError(404, Code.NOT_FOUND, "no device linked by this device")
        blob = (await tx.conn.execute(select(blobs).where(blobs.c.id == body.blob_id))).first()
        if (blob is None or not blob.complete or blob.uploader_device != device.device_id
                or blob.recipient_device != body.device_id):
            raise ProblemError(422, Code.VALIDATION,
                               "the history must be a complete blob addressed to the new device")
        await tx.conn.execute(update(device_links).where(
            device_links.c.id_hash == link.id_hash).values(
            history_blob=body.blob_id, history_key=body.sealed_key))
        tx.audit("link_history_left", user_id=device.user_id, device_id=device.device_id,
                 linked_device=body.device_id, blob=body.blob_id)

    await relay.writer.run(op)
    return Response(status_code=204)


@router.delete("/{link_id}", status_code=204)
async def withdraw(link_id: rest.Id, relay: RelayDep, address: AddressDep) -> Response:
    """The new device gave up (its user cancelled): its code stops working at once rather
    than at expiry, so no one can approve a device whose keys are gone. Too late once
    approved: the device exists, and its user revokes it like any other."""
    key = f"link-poll:{address}"
    relay.limiter.check(key)

    async def op(tx: Tx) -> bool | None:
        link = (await tx.conn.execute(select(device_links.c.device_id).where(
            device_links.c.id_hash == link_hash(link_id),
            device_links.c.expires_at >= tx.now))).first()
        if link is None:
            return None
        if link.device_id is not None:
            return False
        await tx.conn.execute(delete(device_links).where(
            device_links.c.id_hash == link_hash(link_id)))
        return True

    withdrawn = await relay.writer.run(op)
    if withdrawn is None:
        relay.limiter.fail(key)
        raise ProblemError(404, Code.NOT_FOUND, "no such link, or it expired")
    if not withdrawn:
        raise ProblemError(409, Code.CONFLICT, "the link was approved already: revoke the device")
    return Response(status_code=204)


@router.get("/{link_id}", response_model=rest.LinkStatus)
async def status(link_id: rest.Id, relay: RelayDep, address: AddressDep) -> rest.LinkStatus:
    """The new device's poll: its enrolment once approved, then its history's pointer.
    Guessed link ids are counted on a key of their own, so that an approver's typos on the
    same network do not stop the poll."""
    key = f"link-poll:{address}"
    relay.limiter.check(key)
    async with relay.engine.connect() as conn:
        link = (await conn.execute(select(device_links).where(
            device_links.c.id_hash == link_hash(link_id)))).first()
        row = None if link is None or link.device_id is None else (await conn.execute(
            select(devices).where(devices.c.id == link.device_id))).first()
    if link is None or link.expires_at < time.time():
        relay.limiter.fail(key)
        raise ProblemError(404, Code.NOT_FOUND, "no such link, or it expired")
    if row is None:
        return rest.LinkStatus(approved=False)
    enrollment = rest.EnrollResponse(
        user_id=row.user_id, device_id=row.id, credential=row.credential,
        organisation_key=relay.org_key.public_key, organisation_name=relay.config.organisation)
    history = None if link.history_blob is None else rest.LinkHistory(
        device_id=row.id, blob_id=link.history_blob, sealed_key=link.history_key)
    return rest.LinkStatus(approved=True, enrollment=enrollment, approved_by=link.approved_by,
                           history=history)
