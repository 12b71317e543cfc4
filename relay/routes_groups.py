"""Groups as the Delivery Service knows them: an opaque id, member devices, an epoch."""

from __future__ import annotations

from fastapi import APIRouter

from protocol import rest
from protocol.encoding import b64decode
from protocol.problems import Code
from relay.deps import DeviceDep, RelayDep
from relay.errors import ProblemError

router = APIRouter(prefix="/v1/groups", tags=["groups"])


@router.post("", response_model=rest.GroupInfo, status_code=201)
async def create(body: rest.GroupCreate, device: DeviceDep, relay: RelayDep) -> rest.GroupInfo:
    epoch = await relay.create_group(device, body.group_id)
    return rest.GroupInfo(group_id=body.group_id, epoch=epoch, members=[device.device_id])


@router.get("/{group_id}", response_model=rest.GroupInfo)
async def get(group_id: str, device: DeviceDep, relay: RelayDep) -> rest.GroupInfo:
    try:
        gid = b64decode(group_id)
    except ValueError:
        raise ProblemError(422, Code.VALIDATION, "group id is not base64url") from None
    members = relay.members.get(gid)
    if members is None or device.device_id not in members:
        raise ProblemError(404, Code.NOT_FOUND, "no such group, or not a member")
    return rest.GroupInfo(group_id=gid, epoch=relay.epochs[gid], members=sorted(members))
