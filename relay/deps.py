"""FastAPI dependencies shared by the routers: the relay, the caller's device, the address."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from relay.service import AuthDevice, Relay


def get_relay(request: Request) -> Relay:
    return request.app.state.relay


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def current_device(request: Request) -> AuthDevice:
    return await get_relay(request).authenticate(bearer(request))


RelayDep = Annotated[Relay, Depends(get_relay)]
DeviceDep = Annotated[AuthDevice, Depends(current_device)]
AddressDep = Annotated[str, Depends(client_address)]
