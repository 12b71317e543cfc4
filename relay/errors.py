"""Refusals as RFC 9457 problems with a stable code; never a stack trace to a client."""

from __future__ import annotations

from protocol.problems import Code, Problem

_TITLES = {
    400: "Bad request", 401: "Unauthenticated", 403: "Forbidden", 404: "Not found",
    409: "Conflict", 413: "Too large", 416: "Range not satisfiable", 422: "Invalid input",
    429: "Too many requests", 500: "Internal error",
}


class ProblemError(Exception):
    """Raised anywhere in the relay; turned into problem+json (REST) or a Refused frame (WS)."""

    def __init__(self, status: int, code: Code, detail: str | None = None, *,
                 epoch: int | None = None, retry_after: int | None = None) -> None:
        super().__init__(detail or code.value)
        self.status = status
        self.code = code
        self.detail = detail
        self.epoch = epoch
        self.retry_after = retry_after

    def problem(self) -> Problem:
        return Problem(title=_TITLES.get(self.status, "Error"), status=self.status,
                       code=self.code, detail=self.detail, epoch=self.epoch)
