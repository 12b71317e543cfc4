"""Enrollment, challenge login, and the caller's own devices."""

from __future__ import annotations

import json
import os
import secrets
import time

from fastapi import APIRouter, Response
from sqlalchemy import insert, select, update

from crypto.primitives import ed25519_verify
from protocol import rest
from protocol.auth import enroll_proof_message, login_message
from protocol.problems import Code
from relay import totp
from relay.db import challenges, devices, invites, tokens, users
from relay.deps import AddressDep, DeviceDep, RelayDep
from relay.errors import ProblemError
from relay.ids import invite_hash, new_id, token_hash
from relay.writer import Tx

router = APIRouter(prefix="/v1", tags=["accounts"])

@router.post("/enroll", response_model=rest.EnrollResponse)
async def enroll(body: rest.EnrollRequest, relay: RelayDep,
                 address: AddressDep) -> rest.EnrollResponse:
    relay.limiter.check(f"addr:{address}")
    if len(body.signature_key) != 32 or not ed25519_verify(
            body.signature_key, enroll_proof_message(body.invite_code, body.signature_key),
            body.proof):
        relay.limiter.fail(f"addr:{address}")
        raise ProblemError(422, Code.SIGNATURE_INVALID, "proof of key possession is invalid")
    code_hash = invite_hash(body.invite_code)

    async def op(tx: Tx) -> rest.EnrollResponse:
        inv = (await tx.conn.execute(select(invites).where(
            invites.c.code_hash == code_hash))).first()
        if inv is None or inv.used_at is not None or inv.expires_at < tx.now:
            raise ProblemError(403, Code.INVITE_INVALID,
                               "invite code unknown, expired or already used")
        user = (await tx.conn.execute(select(users).where(users.c.id == inv.user_id))).first()
        if user is None or user.status != "active":
            raise ProblemError(403, Code.USER_DISABLED, "this user is disabled")
        relay.limiter.check(f"user:{user.id}")
        totp_uri = None
        if user.totp_secret is not None:
            if body.totp is None:
                raise ProblemError(403, Code.TOTP_REQUIRED,
                                   "this user already has a device: a TOTP code is required")
            if totp.verify(totp.unseal(relay.totp_key, user.totp_secret), body.totp,
                           time.time()) is None:
                relay.limiter.fail(f"user:{user.id}", f"addr:{address}")
                raise ProblemError(403, Code.TOTP_INVALID, "TOTP code is wrong")
        else:
            secret = totp.new_secret()
            await tx.conn.execute(update(users).where(users.c.id == user.id).values(
                totp_secret=totp.seal(relay.totp_key, secret)))
            totp_uri = totp.provisioning_uri(secret, user.display_name,
                                             f"Liaison {relay.config.organisation}")
        device_id = new_id("d_")
        credential = relay.org_key.attest(user.id, device_id, body.signature_key).serialize()
        exists = (await tx.conn.execute(select(devices.c.id).where(
            devices.c.signature_key == body.signature_key))).first()
        if exists is not None:
            raise ProblemError(409, Code.CONFLICT, "this signature key is already enrolled")
        await tx.conn.execute(insert(devices).values(
            id=device_id, user_id=user.id, name=body.device_name,
            signature_key=body.signature_key, credential=credential, created_at=tx.now,
            revocation_handled=False))
        await tx.conn.execute(update(invites).where(invites.c.code_hash == code_hash)
                              .values(used_at=tx.now))
        tx.audit("device_enrolled", user_id=user.id, device_id=device_id,
                 first_device=totp_uri is not None)
        relay.device_user[device_id] = user.id
        tx.on_rollback(lambda: relay.device_user.pop(device_id, None))
        return rest.EnrollResponse(user_id=user.id, device_id=device_id, credential=credential,
                                   organisation_key=relay.org_key.public_key,
                                   organisation_name=relay.config.organisation,
                                   totp_uri=totp_uri)

    return await relay.writer.run(op)


@router.post("/auth/challenge", response_model=rest.ChallengeResponse)
async def challenge(body: rest.ChallengeRequest, relay: RelayDep,
                    address: AddressDep) -> rest.ChallengeResponse:
    """Issued whether or not the device exists, so ids cannot be probed."""
    relay.limiter.check(f"addr:{address}")
    value = os.urandom(32)
    ttl = relay.config.challenge_ttl_seconds

    async def op(tx: Tx) -> None:
        await tx.conn.execute(insert(challenges).values(challenge=value,
                                                        device_id=body.device_id,
                                                        expires_at=tx.now + ttl))

    await relay.writer.run(op)
    return rest.ChallengeResponse(challenge=value, expires_in=ttl)


@router.post("/auth/login", response_model=rest.TokenResponse)
async def login(body: rest.LoginRequest, relay: RelayDep,
                address: AddressDep) -> rest.TokenResponse:
    user_id = relay.device_user.get(body.device_id, "?")
    relay.limiter.check(f"addr:{address}", f"user:{user_id}")
    token = secrets.token_urlsafe(32)
    ttl = relay.config.token_ttl_seconds

    async def op(tx: Tx) -> rest.TokenResponse:
        ch = (await tx.conn.execute(select(challenges).where(
            challenges.c.challenge == body.challenge))).first()
        if ch is not None:  # one-time, whatever happens next
            await tx.conn.execute(challenges.delete().where(
                challenges.c.challenge == body.challenge))
        row = (await tx.conn.execute(select(devices, users.c.status).select_from(
            devices.join(users, users.c.id == devices.c.user_id)).where(
            devices.c.id == body.device_id))).first()
        if ch is None or ch.device_id != body.device_id or ch.expires_at < tx.now:
            raise ProblemError(401, Code.CHALLENGE_INVALID, "challenge unknown or expired")
        if row is None or not ed25519_verify(row.signature_key,
                                             login_message(body.challenge, body.device_id),
                                             body.signature):
            raise ProblemError(401, Code.SIGNATURE_INVALID, "signature does not verify")
        if row.revoked_at is not None:
            raise ProblemError(401, Code.DEVICE_REVOKED, "this device was revoked")
        if row.status != "active":
            raise ProblemError(403, Code.USER_DISABLED, "this user is disabled")
        await tx.conn.execute(insert(tokens).values(token_hash=token_hash(token),
                                                    device_id=body.device_id,
                                                    expires_at=tx.now + ttl))
        tx.audit("login", user_id=row.user_id, device_id=body.device_id)
        return rest.TokenResponse(token=token, expires_in=ttl, user_id=row.user_id)

    try:
        return await relay.writer.run(op)
    except ProblemError as e:
        if e.status == 401:
            relay.limiter.fail(f"addr:{address}", f"user:{user_id}")
            relay.audit_only("login_failed", device_id=body.device_id, reason=e.code.value)
        raise


@router.get("/me", response_model=rest.User)
async def me(device: DeviceDep, relay: RelayDep) -> rest.User:
    async with relay.engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.id == device.user_id))).one()
    return user_model(row)


def user_model(row) -> rest.User:  # type: ignore[no-untyped-def]
    return rest.User(id=row.id, display_name=row.display_name, profession=row.profession,
                     specialty=row.specialty, services=json.loads(row.services),
                     sites=json.loads(row.sites), rpps=row.rpps, roles=json.loads(row.roles),
                     status=row.status)


def device_model(row) -> rest.Device:  # type: ignore[no-untyped-def]
    return rest.Device(id=row.id, user_id=row.user_id, name=row.name,
                       signature_key=row.signature_key, credential=row.credential,
                       created_at=row.created_at, revoked=row.revoked_at is not None)


@router.get("/users/{user_id}/devices", response_model=rest.DeviceList)
async def user_devices(user_id: rest.Id, _: DeviceDep, relay: RelayDep) -> rest.DeviceList:
    """A user's active devices and their attested credentials (to add them to a room)."""
    async with relay.engine.connect() as conn:
        rows = (await conn.execute(select(devices).where(
            devices.c.user_id == user_id, devices.c.revoked_at.is_(None))
            .order_by(devices.c.created_at))).all()
    return rest.DeviceList(devices=[device_model(r) for r in rows])


@router.get("/devices", response_model=rest.DeviceList)
async def my_devices(device: DeviceDep, relay: RelayDep) -> rest.DeviceList:
    async with relay.engine.connect() as conn:
        rows = (await conn.execute(select(devices).where(devices.c.user_id == device.user_id)
                                   .order_by(devices.c.created_at))).all()
    return rest.DeviceList(devices=[device_model(r) for r in rows])


@router.delete("/devices/{device_id}", status_code=204)
async def revoke(device_id: rest.Id, device: DeviceDep, relay: RelayDep) -> Response:
    """Revoke one of the user's devices (or any, for an admin): cut off at once."""
    await relay.revoke_device(device_id, by=device)
    return Response(status_code=204)
