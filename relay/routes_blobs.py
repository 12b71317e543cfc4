"""Documents as opaque encrypted blobs: declare, upload in resumable chunks, fetch by range."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from protocol import rest
from protocol.problems import Code
from relay import blobs
from relay.deps import DeviceDep, RelayDep
from relay.errors import ProblemError

router = APIRouter(prefix="/v1/blobs", tags=["blobs"])

_OCTETS = {"schema": {"type": "string", "format": "binary"}}
_CHUNK_BODY: dict[str, Any] = {"requestBody": {
    "required": True, "description": "the next chunk of ciphertext, at most chunk_size bytes",
    "content": {"application/octet-stream": _OCTETS}}}
_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": _OCTETS}},
    206: {"description": "the requested range", "content": {"application/octet-stream": _OCTETS}},
}


@router.post("", response_model=rest.BlobStatus, status_code=201)
async def create(body: rest.BlobCreate, device: DeviceDep, relay: RelayDep) -> rest.BlobStatus:
    return await blobs.create(relay, device, body)


@router.get("/{blob_id}", response_model=rest.BlobStatus)
async def status(blob_id: rest.Id, device: DeviceDep, relay: RelayDep) -> rest.BlobStatus:
    """Where an interrupted upload resumes: ``stored`` is the next offset."""
    return await blobs.status(relay, device, blob_id)


@router.put("/{blob_id}/content", response_model=rest.BlobStatus, openapi_extra=_CHUNK_BODY)
async def upload(blob_id: rest.Id, offset: Annotated[int, Query(ge=0)], request: Request,
                 device: DeviceDep, relay: RelayDep) -> rest.BlobStatus:
    try:
        data = await request.body()
    except ClientDisconnect:  # the chunk never arrived whole: nothing stored, resume from status
        raise ProblemError(400, Code.BAD_REQUEST, "connection lost mid-chunk") from None
    return await blobs.append(relay, device, blob_id, offset, data)


@router.get("/{blob_id}/content", response_class=StreamingResponse, responses=_CONTENT)
async def download(blob_id: rest.Id, device: DeviceDep, relay: RelayDep,
                   range_: Annotated[str | None, Header(alias="range")] = None
                   ) -> StreamingResponse:
    """The ciphertext, whole or one byte range (206), for current members of its group."""
    row = await blobs.downloadable(relay, device, blob_id)
    span = blobs.byte_range(range_, row.size)
    start, end = span or (0, row.size)
    f = await blobs.open_blob(relay, blob_id)
    relay.audit_only("blob_downloaded", user_id=device.user_id, device_id=device.device_id,
                     group_id=row.group_id, blob=blob_id, size=end - start)
    headers = {"accept-ranges": "bytes", "content-length": str(end - start)}
    if span:
        headers["content-range"] = f"bytes {start}-{end - 1}/{row.size}"
    return StreamingResponse(blobs.read_range(f, start, end), status_code=206 if span else 200,
                             media_type="application/octet-stream", headers=headers)
