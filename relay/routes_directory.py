"""The directory: who works here, found by name, profession and service (never a phone), or
by RPPS number (the admission feed names physicians so).

Search matches the folded words in ``user_terms`` (indexed by kind and term) with a LIKE
prefix, rather than scanning every name; pages are keyset-paginated on (search_name, id),
so a page does not shift when people are added while someone scrolls.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import TypeAdapter
from sqlalchemy import ColumnElement, and_, or_, select

from protocol import rest
from protocol.encoding import b64decode, b64encode
from protocol.problems import Code
from relay.admin import fold, terms
from relay.db import user_terms, users
from relay.deps import DeviceDep, RelayDep
from relay.errors import ProblemError
from relay.routes_accounts import user_model

router = APIRouter(prefix="/v1", tags=["directory"])

_CURSOR = TypeAdapter(tuple[str, str])  # (search_name, id) of the last user of a page


def encode_cursor(search_name: str, user_id: str) -> str:
    return b64encode(_CURSOR.dump_json((search_name, user_id)))


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        return _CURSOR.validate_json(b64decode(cursor))
    except ValueError:
        raise ProblemError(400, Code.BAD_REQUEST, "invalid cursor") from None


def like_prefix(word: str) -> str:
    """A LIKE pattern for words starting with ``word``, its own wildcards escaped."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def has_term(kind: str, condition: ColumnElement[bool]) -> ColumnElement[bool]:
    return users.c.id.in_(select(user_terms.c.user_id).where(user_terms.c.kind == kind,
                                                             condition))


@router.get("/directory", response_model=rest.DirectoryPage)
async def search(device: DeviceDep, relay: RelayDep,
                 q: Annotated[str, Query(max_length=100,
                                         description="name word prefixes")] = "",
                 profession: rest.Profession | None = None,
                 service: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
                 rpps: Annotated[str | None, Query(
                     pattern=r"^\d{11}$", description="exactly this RPPS number")] = None,
                 limit: Annotated[int, Query(ge=1, le=100)] = 20,
                 cursor: Annotated[str | None, Query(max_length=600)] = None,
                 include_disabled: Annotated[bool, Query(
                     description="administrators only")] = False) -> rest.DirectoryPage:
    """Every query word must start some word of the name, case and accents aside."""
    conditions: list[ColumnElement[Any]] = []
    if include_disabled and not device.is_admin:
        raise ProblemError(403, Code.FORBIDDEN, "only an administrator sees disabled users")
    if not include_disabled:
        conditions.append(users.c.status == rest.UserStatus.ACTIVE.value)
    conditions += [has_term("name", user_terms.c.term.like(like_prefix(word), escape="\\"))
                   for word in sorted(terms(q))]
    if profession is not None:
        conditions.append(users.c.profession == profession.value)
    if service is not None:
        conditions.append(has_term("service", user_terms.c.term == fold(service)))
    if rpps is not None:
        conditions.append(users.c.rpps == rpps)
    if cursor is not None:
        name, last_id = decode_cursor(cursor)
        conditions.append(or_(users.c.search_name > name,
                              and_(users.c.search_name == name, users.c.id > last_id)))
    query = (select(users).where(*conditions)
             .order_by(users.c.search_name, users.c.id).limit(limit + 1))
    async with relay.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    page = rows[:limit]
    more = len(rows) > limit
    return rest.DirectoryPage(
        users=[user_model(r) for r in page],
        next_cursor=encode_cursor(page[-1].search_name, page[-1].id) if more else None)


@router.get("/users/{user_id}", response_model=rest.User)
async def get_user(user_id: rest.Id, _: DeviceDep, relay: RelayDep) -> rest.User:
    async with relay.engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
    if row is None:
        raise ProblemError(404, Code.NOT_FOUND, "no such user")
    return user_model(row)
