"""The tamper-evident audit trail: metadata events, each chained to the previous by hash.

Records hold ids, sizes and times only. ``verify`` recomputes the chain, so an edited,
deleted or reordered row breaks it from that point on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from crypto.primitives import ed25519_verify
from relay.db import audit

GENESIS = bytes(32)


@dataclass(frozen=True)
class Record:
    seq: int
    at: float
    event: str
    user_id: str | None
    device_id: str | None
    group_id: str | None
    details: str  # canonical JSON

    def digest(self, prev_hash: bytes) -> bytes:
        body = json.dumps([self.seq, repr(self.at), self.event, self.user_id, self.device_id,
                           self.group_id, self.details], separators=(",", ":"))
        return hashlib.sha256(prev_hash + body.encode()).digest()


def canonical(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"))


class AuditChain:
    """The head of the chain, owned by the relay's single writer."""

    def __init__(self, seq: int, head: bytes) -> None:
        self.seq = seq
        self.head = head

    @classmethod
    async def load(cls, conn: AsyncConnection) -> AuditChain:
        row = (await conn.execute(
            select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1))).first()
        return cls(row.seq, row.hash) if row else cls(0, GENESIS)

    def rows(self, events: Iterable[tuple[float, str, str | None, str | None, str | None,
                                           dict[str, Any]]]) -> list[dict[str, Any]]:
        """Chain these events after the head (advancing it); the caller inserts the rows."""
        out = []
        for at, event, user_id, device_id, group_id, details in events:
            rec = Record(self.seq + 1, at, event, user_id, device_id, group_id,
                         canonical(details))
            h = rec.digest(self.head)
            out.append({"seq": rec.seq, "at": at, "event": event, "user_id": user_id,
                        "device_id": device_id, "group_id": group_id, "details": rec.details,
                        "prev_hash": self.head, "hash": h})
            self.seq, self.head = rec.seq, h
        return out

    def mark(self) -> tuple[int, bytes]:
        return self.seq, self.head

    def reset(self, mark: tuple[int, bytes]) -> None:
        self.seq, self.head = mark


async def insert_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(audit), rows)


async def iter_records(conn: AsyncConnection, since: float | None = None,
                       ) -> AsyncIterator[dict[str, Any]]:
    q = select(audit).order_by(audit.c.seq)
    if since is not None:
        q = q.where(audit.c.at >= since)
    result = await conn.stream(q)
    async for row in result:
        yield dict(row._mapping)


@dataclass
class VerifyResult:
    records: int
    ok: bool
    first_bad_seq: int | None = None
    reason: str | None = None


async def verify(conn: AsyncConnection) -> VerifyResult:
    prev, expected_seq, n = GENESIS, 1, 0
    async for r in iter_records(conn):
        n += 1
        if r["seq"] != expected_seq:
            return VerifyResult(n, False, r["seq"],
                                f"sequence jumps from {expected_seq - 1} to {r['seq']}")
        if r["prev_hash"] != prev:
            return VerifyResult(n, False, r["seq"], "previous-hash link is broken")
        rec = Record(r["seq"], r["at"], r["event"], r["user_id"], r["device_id"],
                     r["group_id"], r["details"])
        if rec.digest(prev) != r["hash"]:
            return VerifyResult(n, False, r["seq"], "record content does not match its hash")
        prev, expected_seq = r["hash"], expected_seq + 1
    return VerifyResult(n, True)


_HEAD_LABEL = b"Liaison 1.0 AuditHead"


def head_message(seq: int, head: bytes) -> bytes:
    return _HEAD_LABEL + seq.to_bytes(8, "big") + head


def write_head(path: Path, seq: int, head: bytes, signature: bytes) -> None:
    """The signed head anchors the chain's end: deleting the newest records is caught too."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"seq": seq, "hash": head.hex(), "signature": signature.hex()}))
    os.replace(tmp, path)


async def verify_head(conn: AsyncConnection, path: Path, public_key: bytes,
                      result: VerifyResult) -> VerifyResult:
    """A verified chain must still reach the last head the relay signed."""
    if not result.ok or not path.exists():
        return result
    head = json.loads(path.read_text())
    seq, digest = head["seq"], bytes.fromhex(head["hash"])
    if not ed25519_verify(public_key, head_message(seq, digest),
                          bytes.fromhex(head["signature"])):
        return VerifyResult(result.records, False, seq, "signed head does not verify")
    row = (await conn.execute(select(audit.c.hash).where(audit.c.seq == seq))).first()
    if row is None or row.hash != digest:
        return VerifyResult(result.records, False, seq,
                            f"records up to {seq} were signed but are missing or altered")
    return result
