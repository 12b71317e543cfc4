"""The relay's ASGI app: REST routers, the delivery WebSocket, problem+json errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from protocol import PROTOCOL_VERSION
from protocol.problems import Code, Problem
from relay import (
    routes_accounts,
    routes_blobs,
    routes_directory,
    routes_groups,
    routes_keys,
    routes_link,
    ws,
)
from relay.errors import ProblemError
from relay.service import Relay

log = logging.getLogger("liaison.relay")

PROBLEM_JSON = "application/problem+json"
_STATUS_CODES = {400: Code.BAD_REQUEST, 401: Code.UNAUTHENTICATED, 403: Code.FORBIDDEN,
                 404: Code.NOT_FOUND, 405: Code.BAD_REQUEST, 409: Code.CONFLICT,
                 413: Code.TOO_LARGE, 416: Code.RANGE_INVALID, 429: Code.RATE_LIMITED}


def problem_response(err: ProblemError) -> JSONResponse:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
    return JSONResponse(err.problem().model_dump(mode="json", exclude_none=True),
                        status_code=err.status, media_type=PROBLEM_JSON, headers=headers)


def create_app(relay: Relay) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await relay.start()
        try:
            yield
        finally:
            await relay.stop()

    app = FastAPI(title="Liaison relay", version=str(PROTOCOL_VERSION), lifespan=lifespan,
                  responses={"default": {"model": Problem, "description": "problem+json"}})
    app.state.relay = relay

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()[:5])
        return problem_response(ProblemError(422, Code.VALIDATION, f"invalid fields: {fields}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, Code.BAD_REQUEST)
        return problem_response(ProblemError(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s", type(exc).__name__)
        return problem_response(ProblemError(500, Code.INTERNAL, "internal error"))

    @app.get("/v1/health", tags=["ops"])
    async def health() -> dict[str, object]:
        return {"status": "ok" if relay.accepting else "starting", "protocol": PROTOCOL_VERSION,
                "organisation": relay.config.organisation,
                "organisation_key_fingerprint": relay.org_key.fingerprint}

    for module in (routes_accounts, routes_keys, routes_groups, routes_blobs, routes_directory,
                   routes_link):
        app.include_router(module.router)
    app.add_api_websocket_route("/v1/ws", ws.endpoint)
    app.add_middleware(BodyLimit, relay=relay)
    return app


class BodyLimit:
    """Refuse oversized request bodies, declared or streamed, before they are buffered.

    Blob chunks have their own cap (one chunk plus slack); everything else ``max_body_bytes``.
    """

    def __init__(self, app: ASGIApp, relay: Relay) -> None:
        self.app = app
        self.relay = relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cfg = self.relay.config
        cap = cfg.blob_chunk_bytes + 1024 if scope["path"].startswith("/v1/blobs/") \
            else cfg.max_body_bytes
        too_large = problem_response(ProblemError(413, Code.TOO_LARGE,
                                                  f"body larger than {cap} bytes"))
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > cap):
                await too_large(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            # an HTTPException, not a private one: FastAPI turns any other exception raised
            # while it reads a body into a 400, while this one reaches the 413 handler
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > cap:
                    raise StarletteHTTPException(413, f"body larger than {cap} bytes")
            return msg

        await self.app(scope, limited, send)
