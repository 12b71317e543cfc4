"""Reading FHIR answers, with no I/O: status, content type and body in, models or errors out.

Each resource is validated on its own with the ``fhir.resources`` R4B model of its type, so
an error names the resource at fault ("Patient/p1: birthDate: ...") rather than a Bundle path.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from record.errors import FhirError

R = TypeVar("R", bound=Resource)


def read_json(status: int, content_type: str, body: bytes, what: str) -> dict[str, Any]:
    """The JSON object of an answer; an error status becomes a FhirError with its outcome."""
    try:
        data = json.loads(body) if body else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if status >= 400:
        detail = outcome_text(data) if isinstance(data, dict) else None
        detail = detail or _not_fhir(content_type, body)
        raise FhirError(f"{what}: HTTP {status}: {detail}", status)
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise FhirError(f"{what}: not a FHIR answer ({_not_fhir(content_type, body)})", status)
    return data


def _not_fhir(content_type: str, body: bytes) -> str:
    kind = content_type.split(";")[0].strip() or "no content type"
    start = body[:80].decode("utf-8", "replace").strip()
    return f"{kind}: {start!r}" if start else f"{kind}, empty body"


def outcome_text(data: dict[str, Any]) -> str | None:
    """The diagnostics and details of an OperationOutcome's issues, joined; None otherwise."""
    if data.get("resourceType") != "OperationOutcome":
        return None
    texts = []
    for issue in data.get("issue") or ():
        if not isinstance(issue, dict):
            continue
        details = issue.get("details") if isinstance(issue.get("details"), dict) else {}
        parts = [issue.get("diagnostics"), details.get("text"),
                 *(c.get("display") for c in details.get("coding") or () if isinstance(c, dict))]
        text = "; ".join(dict.fromkeys(p for p in parts if isinstance(p, str) and p))
        texts.append(f"{issue.get('severity', 'error')} {issue.get('code', '')}: {text}".strip())
    return " | ".join(texts) or "OperationOutcome without issues"


def resource(data: dict[str, Any], kind: type[R], what: str) -> R:
    """One resource of type ``kind``, validated."""
    found = data.get("resourceType")
    if found == "OperationOutcome":  # a 2xx answer that is really a refusal
        raise FhirError(f"{what}: {outcome_text(data)}")
    if found != kind.get_resource_type():
        raise FhirError(f"{what}: expected a {kind.get_resource_type()}, got {found!r}")
    return _validate(data, kind)


def _validate(data: dict[str, Any], kind: type[R]) -> R:
    try:
        return kind.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        label = f"{data['resourceType']}/{data.get('id', '?')}"
        raise FhirError(f"invalid {label} from the server: {field}: {first['msg']}{more}") \
            from None


def searchset(data: dict[str, Any], kind: type[R], what: str) -> tuple[list[R], str | None]:
    """The ``kind`` matches of one search page (included resources and outcomes skipped) and
    the URL of the next page."""
    if data.get("resourceType") != "Bundle":
        raise FhirError(f"{what}: expected a search Bundle, got {data.get('resourceType')!r}")
    matches = []
    for entry in data.get("entry") or ():
        raw = entry.get("resource") if isinstance(entry, dict) else None
        mode = (entry.get("search") or {}).get("mode") if isinstance(entry, dict) else None
        if isinstance(raw, dict) and mode not in ("include", "outcome") \
                and raw.get("resourceType") == kind.get_resource_type():
            matches.append(_validate(raw, kind))
    nxt = next((link.get("url") for link in data.get("link") or ()
                if isinstance(link, dict) and link.get("relation") == "next"), None)
    return matches, nxt if isinstance(nxt, str) and nxt else None


def same_origin(url: str, base: str) -> bool:
    """Whether a next-page URL stays on the configured server (credentials go nowhere else)."""
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def reference_id(reference: str | None, kind: str) -> str | None:
    """The id in a ``Type/id`` (or absolute ``.../Type/id``) reference to a ``kind``."""
    parts = (reference or "").split("/")
    if len(parts) >= 2 and parts[-2] == kind and parts[-1]:
        return parts[-1]
    return None
