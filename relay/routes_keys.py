"""KeyPackages: devices publish batches; others claim exactly one per target device."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from crypto.cipher_suite import suite
from crypto.errors import MLSError
from crypto.key_package import KeyPackage
from crypto.message import MLSMessage
from protocol import rest
from protocol.problems import Code
from relay.db import devices, key_packages
from relay.deps import DeviceDep, RelayDep
from relay.errors import ProblemError
from relay.writer import Tx

router = APIRouter(prefix="/v1/keypackages", tags=["key packages"])
MAX_HELD = 1000


def _check(data: bytes, signature_key: bytes, credential: bytes) -> None:
    """Only this device's own, well-formed, self-signed KeyPackages are stored."""
    try:
        msg = MLSMessage.deserialize(data)
        kp = msg.body
        if not isinstance(kp, KeyPackage):
            raise ProblemError(422, Code.KEY_PACKAGE_INVALID, "not a KeyPackage")
        kp.verify(suite(kp.cipher_suite))
    except MLSError as e:
        raise ProblemError(422, Code.KEY_PACKAGE_INVALID, f"invalid KeyPackage: {e}") from None
    leaf = kp.leaf_node
    if leaf.signature_key != signature_key or leaf.credential.serialize() != credential:
        raise ProblemError(422, Code.KEY_PACKAGE_INVALID,
                           "KeyPackage does not carry this device's key and credential")


@router.post("", response_model=rest.KeyPackageCount)
async def upload(body: rest.KeyPackageUpload, device: DeviceDep,
                 relay: RelayDep) -> rest.KeyPackageCount:
    async with relay.engine.connect() as conn:
        me = (await conn.execute(select(devices.c.signature_key, devices.c.credential).where(
            devices.c.id == device.device_id))).one()
    for data in [*body.key_packages, *([body.last_resort] if body.last_resort else [])]:
        _check(data, me.signature_key, me.credential)

    async def op(tx: Tx) -> rest.KeyPackageCount:
        held = (await tx.conn.execute(select(func.count()).select_from(key_packages).where(
            key_packages.c.device_id == device.device_id,
            key_packages.c.last_resort.is_(False)))).scalar_one()
        if held + len(body.key_packages) > MAX_HELD:
            raise ProblemError(413, Code.TOO_LARGE, f"at most {MAX_HELD} KeyPackages per device")
        rows = [{"device_id": device.device_id, "data": d, "last_resort": False,
                 "created_at": tx.now} for d in body.key_packages]
        if body.last_resort is not None:
            await tx.conn.execute(delete(key_packages).where(
                key_packages.c.device_id == device.device_id,
                key_packages.c.last_resort.is_(True)))
            rows.append({"device_id": device.device_id, "data": body.last_resort,
                         "last_resort": True, "created_at": tx.now})
        if rows:
            await tx.conn.execute(insert(key_packages), rows)
        tx.audit("key_packages_uploaded", user_id=device.user_id, device_id=device.device_id,
                 count=len(body.key_packages), last_resort=body.last_resort is not None)
        return await _count(tx.conn, device.device_id)

    return await relay.writer.run(op)


async def _count(conn: AsyncConnection, device_id: str) -> rest.KeyPackageCount:
    rows = (await conn.execute(select(key_packages.c.last_resort, func.count()).where(
        key_packages.c.device_id == device_id).group_by(key_packages.c.last_resort))).all()
    counts = {bool(r[0]): r[1] for r in rows}
    return rest.KeyPackageCount(available=counts.get(False, 0), last_resort=True in counts)


@router.get("/count", response_model=rest.KeyPackageCount)
async def count(device: DeviceDep, relay: RelayDep) -> rest.KeyPackageCount:
    async with relay.engine.connect() as conn:
        return await _count(conn, device.device_id)


@router.post("/claim", response_model=rest.ClaimedKeyPackages)
async def claim(body: rest.KeyPackageClaim, device: DeviceDep,
                relay: RelayDep) -> rest.ClaimedKeyPackages:
    """One KeyPackage per device, consumed; the last-resort one is reused, never consumed.

    All or nothing: if a device has none left, nothing is consumed.
    """
    async def op(tx: Tx) -> rest.ClaimedKeyPackages:
        out, missing = [], []
        for target in dict.fromkeys(body.device_ids):
            owner = (await tx.conn.execute(select(devices.c.user_id).where(
                devices.c.id == target, devices.c.revoked_at.is_(None)))).first()
            row = None
            if owner is not None:
                row = (await tx.conn.execute(select(key_packages).where(
                    key_packages.c.device_id == target).order_by(
                    key_packages.c.last_resort, key_packages.c.id).limit(1))).first()
            if row is None:
                missing.append(target)
                continue
            if not row.last_resort:
                await tx.conn.execute(delete(key_packages).where(key_packages.c.id == row.id))
            out.append(rest.ClaimedKeyPackage(device_id=target, user_id=owner.user_id,
                                              key_package=row.data,
                                              last_resort=row.last_resort))
        if missing:
            raise ProblemError(409, Code.NO_KEY_PACKAGE,
                               "no KeyPackage available for: " + ", ".join(missing))
        tx.audit("key_packages_claimed", user_id=device.user_id, device_id=device.device_id,
                 targets=[c.device_id for c in out])
        return rest.ClaimedKeyPackages(key_packages=out)

    return await relay.writer.run(op)
