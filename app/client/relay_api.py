"""A typed REST client of the relay: protocol models in, protocol models out.

Every refusal becomes a ``RelayError`` carrying the relay's problem, so callers branch on
``Code`` values, never on status numbers or human text; an unreachable relay (or something
that is not the relay answering) becomes ``RelayUnavailable``, which callers retry later.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from crypto.primitives import ed25519_public, ed25519_sign
from protocol import rest
from protocol.auth import enroll_proof_message, link_proof_message, login_message
from protocol.encoding import b64encode
from protocol.problems import Code, Problem

M = TypeVar("M", bound=BaseModel)


class RelayError(Exception):
    """The relay refused a request; ``problem`` says why in machine-readable form."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.code.value} ({problem.status}): "
                         f"{problem.detail or problem.title}")
        self.problem = problem

    @property
    def code(self) -> Code:
        return self.problem.code

    @property
    def status(self) -> int:
        return self.problem.status


class RelayUnavailable(Exception):
    """The relay could not be reached or did not answer as the relay: try again later."""


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default trust store, loaded once: loading it costs every client ~0.1 s."""
    return httpx.create_ssl_context()


class RelayClient:
    """One device's REST session; after ``login`` it re-authenticates by itself."""

    def __init__(self, base_url: str, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport,
                                       verify=_tls())
        self._device_id: str | None = None
        self._seed: bytes | None = None
        self.token: str | None = None

    async def __aenter__(self) -> RelayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- transport ---------------------------------------------------------------------------
    async def _send(self, method: str, path: str, *, stream: bool = False,
                    headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """A 2xx response; on an expired token, log in again once and retry."""
        response = await self._attempt(method, path, stream, headers, kwargs)
        if (response.status_code == 401 and self._seed is not None
                and _error(response).code is Code.UNAUTHENTICATED):
            await self.login(self._device_id or "", self._seed)
            response = await self._attempt(method, path, stream, headers, kwargs)
        if not response.is_success:
            raise _error(response)
        return response

    async def _attempt(self, method: str, path: str, stream: bool,
                       headers: dict[str, str] | None, kwargs: dict[str, Any]) -> httpx.Response:
        request = self._http.build_request(method, path, headers=self._headers(headers),
                                           **kwargs)
        try:
            response = await self._http.send(request, stream=stream)
            if not response.is_success:  # an error body is small: read it whole
                await response.aread()
                await response.aclose()
        except httpx.HTTPError as e:  # connect/read/write errors and timeouts alike
            raise RelayUnavailable(f"{method} {path}: {e!r}") from e
        return response

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    async def _call(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        response = await self._send(method, path, **kwargs)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as e:
            raise RelayUnavailable(f"{method} {path}: unexpected answer") from e

    # -- account -----------------------------------------------------------------------------
    async def enroll(self, invite_code: str, device_name: str, signature_seed: bytes,
                     totp: str | None = None) -> rest.EnrollResponse:
        """Register this device's key; ``totp`` is needed when the user has a device already."""
        key = ed25519_public(signature_seed)
        body = rest.EnrollRequest(
            invite_code=invite_code, device_name=device_name, signature_key=key,
            proof=ed25519_sign(signature_seed, enroll_proof_message(invite_code, key)),
            totp=totp)
        return await self._call(rest.EnrollResponse, "POST", "/v1/enroll", json=_json(body))

    async def login(self, device_id: str, signature_seed: bytes) -> rest.TokenResponse:
        """Challenge, sign, keep the token (and the key, to log in again when it expires)."""
        challenge = await self._call(rest.ChallengeResponse, "POST", "/v1/auth/challenge",
                                     json=_json(rest.ChallengeRequest(device_id=device_id)))
        body = rest.LoginRequest(
            device_id=device_id, challenge=challenge.challenge,
            signature=ed25519_sign(signature_seed, login_message(challenge.challenge, device_id)))
        token = await self._call(rest.TokenResponse, "POST", "/v1/auth/login", json=_json(body))
        self._device_id, self._seed, self.token = device_id, signature_seed, token.token
        return token

    async def me(self) -> rest.User:
        return await self._call(rest.User, "GET", "/v1/me")

    async def my_devices(self) -> rest.DeviceList:
        return await self._call(rest.DeviceList, "GET", "/v1/devices")

    async def user_devices(self, user_id: str) -> rest.DeviceList:
        """A user's active devices with their attested credentials."""
        return await self._call(rest.DeviceList, "GET", f"/v1/users/{user_id}/devices")

    async def revoke_device(self, device_id: str) -> None:
        await self._send("DELETE", f"/v1/devices/{device_id}")

    # -- directory ---------------------------------------------------------------------------
    async def directory(self, q: str = "", *, profession: rest.Profession | None = None,
                        service: str | None = None, rpps: str | None = None, limit: int = 20,
                        cursor: str | None = None) -> rest.DirectoryPage:
        params = {"q": q, "profession": profession, "service": service, "rpps": rpps,
                  "limit": limit, "cursor": cursor}
        return await self._call(rest.DirectoryPage, "GET", "/v1/directory",
                                params={k: v for k, v in params.items() if v is not None})

    # -- key packages ------------------------------------------------------------------------
    async def upload_key_packages(self, key_packages: list[bytes],
                                  last_resort: bytes | None = None) -> rest.KeyPackageCount:
        body = rest.KeyPackageUpload(key_packages=key_packages, last_resort=last_resort)
        return await self._call(rest.KeyPackageCount, "POST", "/v1/keypackages",
                                json=_json(body))

    async def key_package_count(self) -> rest.KeyPackageCount:
        return await self._call(rest.KeyPackageCount, "GET", "/v1/keypackages/count")

    async def claim_key_packages(self, device_ids: list[str]) -> rest.ClaimedKeyPackages:
        """One KeyPackage per device, all or nothing (``NO_KEY_PACKAGE`` names the missing)."""
        body = rest.KeyPackageClaim(device_ids=device_ids)
        return await self._call(rest.ClaimedKeyPackages, "POST", "/v1/keypackages/claim",
                                json=_json(body))

    # -- groups ------------------------------------------------------------------------------
    async def create_group(self, group_id: bytes) -> rest.GroupInfo:
        return await self._call(rest.GroupInfo, "POST", "/v1/groups",
                                json=_json(rest.GroupCreate(group_id=group_id)))

    async def group(self, group_id: bytes) -> rest.GroupInfo:
        return await self._call(rest.GroupInfo, "GET", f"/v1/groups/{b64encode(group_id)}")

    # -- blobs -------------------------------------------------------------------------------
    async def create_blob(self, group_id: bytes | None, size: int, sha256: bytes, *,
                          recipient_device: str | None = None) -> rest.BlobStatus:
        """A blob for a group's members, or (``group_id`` None) for one device of this user."""
        body = rest.BlobCreate(group_id=group_id, size=size, sha256=sha256,
                               recipient_device=recipient_device)
        return await self._call(rest.BlobStatus, "POST", "/v1/blobs", json=_json(body))

    async def blob_status(self, blob_id: str) -> rest.BlobStatus:
        """``stored`` is where an interrupted upload resumes."""
        return await self._call(rest.BlobStatus, "GET", f"/v1/blobs/{blob_id}")

    async def put_blob_chunk(self, blob_id: str, offset: int, data: bytes) -> rest.BlobStatus:
        return await self._call(rest.BlobStatus, "PUT", f"/v1/blobs/{blob_id}/content",
                                params={"offset": offset}, content=data,
                                headers={"content-type": "application/octet-stream"})

    async def download_blob(self, blob_id: str, start: int = 0) -> AsyncIterator[bytes]:
        """The ciphertext from ``start`` on, as it arrives: resume with the bytes kept so far."""
        headers = {"range": f"bytes={start}-"} if start else None
        response = await self._send("GET", f"/v1/blobs/{blob_id}/content", stream=True,
                                    headers=headers)
        try:
            async for piece in response.aiter_bytes():
                yield piece
        except httpx.HTTPError as e:
            raise RelayUnavailable(f"download of {blob_id} interrupted: {e!r}") from e
        finally:
            await response.aclose()


    # -- device linking ----------------------------------------------------------------------
    async def start_link(self, device_name: str, signature_seed: bytes,
                         box_key: bytes) -> rest.LinkStarted:
        """Ask, unauthenticated, to link this new device; the answer's code is approved
        elsewhere."""
        key = ed25519_public(signature_seed)
        body = rest.LinkStart(device_name=device_name, signature_key=key, box_key=box_key,
                              proof=ed25519_sign(signature_seed, link_proof_message(key, box_key)))
        return await self._call(rest.LinkStarted, "POST", "/v1/link", json=_json(body))

    async def link_status(self, link_id: str) -> rest.LinkStatus:
        return await self._call(rest.LinkStatus, "GET", f"/v1/link/{link_id}")

    async def withdraw_link(self, link_id: str) -> None:
        """Give the link up: its code stops working (RelayError ``conflict`` once approved)."""
        await self._send("DELETE", f"/v1/link/{link_id}")

    async def approve_link(self, body: rest.LinkApprove) -> rest.LinkApproved:
        return await self._call(rest.LinkApproved, "POST", "/v1/link/approve", json=_json(body))

    async def leave_history(self, pointer: rest.LinkHistory) -> None:
        await self._send("PUT", "/v1/link/history", json=_json(pointer))


def _json(model: BaseModel) -> Any:
    return model.model_dump(mode="json", exclude_none=True)


def _error(response: httpx.Response) -> RelayError:
    """The relay's problem; a body without one (a proxy's page) still gets a code."""
    try:
        return RelayError(Problem.model_validate_json(response.content))
    except ValidationError:
        status = response.status_code
        code = Code.INTERNAL if status >= 500 else Code.BAD_REQUEST
        return RelayError(Problem(title=response.reason_phrase or "Error", status=status,
                                  code=code, detail="answer without a problem body"))
