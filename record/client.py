"""The thin async transport: httpx, authentication, paging; parsing lives in ``wire``.

Every transport failure (timeout, refused connection, TLS) becomes a ``FhirError`` naming
the server and what was asked, so a clinician sees "the record did not answer", not a trace.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from record import auth, wire
from record.config import BearerAuth, ClientCredentials, FhirConfig
from record.errors import FhirError
from record.wire import R

FHIR_JSON = "application/fhir+json"


class FhirClient:
    """One hospital's FHIR server. Use as ``async with FhirClient(config) as fhir: ...``."""

    def __init__(self, config: FhirConfig) -> None:
        self.config = config
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            verify=config.ssl_verify(), headers={"Accept": FHIR_JSON}, follow_redirects=False)
        self._token: auth.Token | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def read(self, kind: type[R], rid: str) -> R:
        """``GET [base]/Type/id``."""
        what = f"{kind.get_resource_type()}/{rid}"
        return wire.resource(await self._call(f"{self.config.base}/{what}", None, what), kind, what)

    async def search(self, kind: type[R], params: Mapping[str, str]) -> list[R]:
        """All matches of ``GET [base]/Type?params``, following ``next`` links page by page."""
        name = kind.get_resource_type()
        what = f"search {name}" + (f" by {', '.join(params)}" if params else "")  # no values:
        # they may identify a patient, and messages end up in logs
        url: str | None = f"{self.config.base}/{name}"
        query: dict[str, str] | None = {**params, "_count": str(self.config.page_size)}
        found: list[R] = []
        seen: set[str] = set()
        while url is not None:
            if len(seen) == self.config.max_pages or url in seen:
                raise FhirError(f"{what}: the server keeps paging ({len(seen)} pages); "
                                "giving up")
            seen.add(url)
            page, url = wire.searchset(await self._call(url, query, what), kind, what)
            found.extend(page)
            query = None  # a next link carries the whole query
            if url is not None and not wire.same_origin(url, self.config.base):
                raise FhirError(f"{what}: next page {url} is on another server than "
                                f"{self.config.base}; not following it")
        return found

    async def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """``POST [base]`` of a transaction Bundle: all its entries are stored, or none."""
        what = "transaction"
        answer = await self._call(self.config.base, None, what, body=bundle)
        if answer.get("resourceType") != "Bundle":
            raise FhirError(f"{what}: expected a transaction-response Bundle, got "
                            f"{answer.get('resourceType')!r}")
        return answer

    async def _call(self, url: str, params: Mapping[str, str] | None, what: str,
                   body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET, or POST ``body`` when there is one; the answer's JSON."""
        answer = await self._send(url, params, what, body)
        if answer.status_code == 401 and isinstance(self.config.auth, ClientCredentials) \
                and self._token is not None:
            self._token = None  # revoked or expired early: one fresh token, one retry
            answer = await self._send(url, params, what, body)
        return wire.read_json(answer.status_code, answer.headers.get("content-type", ""),
                              answer.content, what)

    async def _send(self, url: str, params: Mapping[str, str] | None, what: str,
                    body: Mapping[str, Any] | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if (token := await self._bearer()) \
            else {}
        if body is None:
            return await self._transport(what, self._http.get(url, params=params,
                                                              headers=headers))
        return await self._transport(what, self._http.post(
            url, params=params, json=body, headers={**headers, "Content-Type": FHIR_JSON}))

    async def _bearer(self) -> str | None:
        a = self.config.auth
        if isinstance(a, BearerAuth):
            return a.token.get_secret_value()
        if not isinstance(a, ClientCredentials):
            return None
        now = time.monotonic()
        if self._token is None or not self._token.usable(now):
            req = auth.token_request(a)
            answer = await self._transport(
                f"token endpoint {req.url}",
                self._http.post(req.url, data=req.form, auth=req.basic,
                                headers={"Accept": "application/json"}))
            self._token = auth.read_token(answer.status_code, answer.content, now)
        return self._token.value

    async def _transport(self, what: str, request: Awaitable[httpx.Response]) \
            -> httpx.Response:
        """Await an httpx call, turning its transport failures into FhirError."""
        try:
            return await request
        except httpx.TimeoutException:
            raise FhirError(f"{what}: {self.config.base} did not answer in time "
                            f"(connect {self.config.connect_timeout:g}s, "
                            f"read {self.config.read_timeout:g}s)") from None
        except httpx.TransportError as e:
            raise FhirError(f"{what}: cannot reach {self.config.base}: "
                            f"{e or type(e).__name__}") from None
