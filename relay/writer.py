"""The single writer: every change to the relay's database goes through one queue.

Operations are executed in batches, one transaction per batch, so thousands of messages a
second cost a handful of statements and one commit. Nothing is acknowledged to anyone
before its transaction is durable. A failing operation is rolled back to its own
savepoint and fails alone.

On SQLite, a batch of messages and acknowledgements is pushed to its recipients as soon as it
has committed, while its fsync runs (see relay.sqlite_writer): a recipient gets it one fsync
sooner, and the senders are still answered only once it is durable. Commits (the group's
epochs) take the other path, pushed only once durable: a commit the relay forgot after a power
cut, while members had applied it, would split the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from relay.audit import AuditChain, insert_rows
from relay.db import envelopes, lock_for_writing, mailbox
from relay.sqlite_writer import NotDurableError, SqliteWriter

log = logging.getLogger("liaison.relay.writer")

AuditEvent = tuple[float, str, str | None, str | None, str | None, dict[str, Any]]


@dataclass
class NewEnvelope:
    """An envelope to store, with the devices whose mailboxes receive it."""

    sender_device: str | None
    client_id: str | None
    group_id: bytes
    kind: str
    epoch: int | None
    payload: bytes
    recipients: list[str]
    id: int = 0
    seqs: list[tuple[str, int]] = field(default_factory=list)
    sent_at: float = 0.0  # the relay's time for it: unique and increasing, the room's order


class Stored(NamedTuple):
    """What a resend of a stored client message is answered with."""

    epoch: int | None  # the epoch a commit moved the group to, or the message's epoch
    sent_at: float


def _epoch_after(env: NewEnvelope) -> int | None:
    """What a resend is answered with: the epoch a commit moved the group to."""
    return env.epoch + 1 if env.kind == "commit" and env.epoch is not None else env.epoch


class Tx:
    """What an operation may do inside the batch's transaction."""

    def __init__(self, conn: AsyncConnection | None, writer: Writer) -> None:
        self.conn = conn
        self.writer = writer
        self.now = time.time()
        self.audit_events: list[AuditEvent] = []
        self.envelopes: list[NewEnvelope] = []
        self.after_commit: list[Callable[[], None]] = []
        self.undo: list[Callable[[], None]] = []
        self.acked: list[tuple[str, int]] = []
        self._keys: dict[DedupeKey, Stored] = {}

    def seen(self, key: DedupeKey) -> Stored | None:
        """Already stored, in an earlier batch or earlier in this one?"""
        if key in self._keys:
            return self._keys[key]
        return self.writer.seen(key)

    def ack(self, device_id: str, seqs: list[int]) -> None:
        """Drop delivered mailbox entries; one statement for the whole batch."""
        self.acked.extend((device_id, s) for s in seqs)

    def rollback_to(self, n_audit: int, n_env: int, n_after: int) -> None:
        """Forget what a failed operation added to the batch."""
        del self.audit_events[n_audit:], self.envelopes[n_env:], self.after_commit[n_after:]
        self._keys = {k: v for k, v in self._keys.items()
                      if any((e.sender_device, e.client_id) == k for e in self.envelopes)}

    def audit(self, event: str, *, user_id: str | None = None, device_id: str | None = None,
              group_id: bytes | None = None, **details: Any) -> None:
        self.audit_events.append((self.now, event, user_id, device_id,
                                  group_id.hex() if group_id is not None else None, details))

    def enqueue(self, env: NewEnvelope) -> NewEnvelope:
        """Store an envelope and put it in each recipient's mailbox (ids allocated here)."""
        env.id = self.writer.next_envelope_id()
        env.seqs = [(d, self.writer.next_seq()) for d in env.recipients]
        env.sent_at = self.writer.next_sent_at(self.now)
        self.envelopes.append(env)
        if env.sender_device is not None and env.client_id is not None:
            self._keys[(env.sender_device, env.client_id)] = Stored(_epoch_after(env), env.sent_at)
        return env

    def on_commit(self, fn: Callable[[], None]) -> None:
        self.after_commit.append(fn)

    def on_rollback(self, fn: Callable[[], None]) -> None:
        """Undo an in-memory change (made last in its op) if the whole batch fails."""
        self.undo.append(fn)


Op = Callable[[Tx], Awaitable[Any]]


DedupeKey = tuple[str, str]  # (sender device, client-chosen id)


@dataclass
class _Pending:
    op: Op
    future: asyncio.Future[Any]
    savepoint: bool
    dedupe: DedupeKey | None
    fast: bool  # the op only queues rows (tx.enqueue, tx.ack, tx.audit): no SQL of its own


class Writer:
    def __init__(self, engine: AsyncEngine, *, message_ttl: float,
                 sqlite: SqliteWriter | None = None,
                 on_delivered: Callable[[list[NewEnvelope]], None],
                 on_audit_head: Callable[[int, bytes], None] | None = None) -> None:
        self.engine = engine
        self.message_ttl = message_ttl
        self.on_delivered = on_delivered
        self.sqlite = sqlite
        self.on_audit_head = on_audit_head
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.chain = AuditChain(0, bytes(32))
        self._envelope_id = 0
        self._seq = 0
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection | None = None
        self.batches = 0
        self._sent_at = 0.0
        # (sender, client id) -> what it was stored as: resends are recognised
        self._seen: OrderedDict[DedupeKey, Stored] = OrderedDict()
        self._loaded_senders: set[str] = set()
        self.seen_limit = 200_000

    async def start(self) -> None:
        async with self.engine.connect() as conn:
            self.chain = await AuditChain.load(conn)
            self._envelope_id = (await conn.execute(select(envelopes.c.id).order_by(
                envelopes.c.id.desc()).limit(1))).scalar() or 0
            self._seq = (await conn.execute(select(mailbox.c.seq).order_by(
                mailbox.c.seq.desc()).limit(1))).scalar() or 0
            self._sent_at = (await conn.execute(select(
                func.max(envelopes.c.created_at)))).scalar() or 0.0
        self._task = asyncio.create_task(self._run(), name="relay-writer")

    async def stop(self) -> None:
        """Finish everything queued (nothing accepted is lost), then stop."""
        if self._task is None:
            return
        await self.queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        if self.sqlite is not None:
            await self.sqlite.close()

    async def _connection(self) -> AsyncConnection:
        """The writer keeps one connection: no pool checkout or reset per batch."""
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = await self.engine.connect()
        return self._conn

    def next_envelope_id(self) -> int:
        self._envelope_id += 1
        return self._envelope_id

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def submit(self, op: Op, *, savepoint: bool = True, dedupe: DedupeKey | None = None,
               fast: bool = False) -> asyncio.Future[Any]:
        """Queue an operation; ``dedupe`` names a client message so a resend is recognised.

        ``fast`` ops issue no SQL themselves (they queue rows), so on SQLite a batch of them
        is written in one trip to the database thread.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(_Pending(op, fut, savepoint and not fast, dedupe, fast))
        return fut

    def seen(self, key: DedupeKey) -> Stored | None:
        """How this client message was stored, if it was."""
        return self._seen.get(key)

    def next_sent_at(self, now: float) -> float:
        """Envelope times never repeat nor go back, even within a batch or after a restart
        with a clock set back: every device orders a room's messages by them alike."""
        self._sent_at = max(now, self._sent_at + 1e-6)
        return self._sent_at

    def _remember(self, key: DedupeKey, stored: Stored) -> None:
        self._seen[key] = stored
        if len(self._seen) > self.seen_limit:
            (sender, _), _ = self._seen.popitem(last=False)
            self._loaded_senders.discard(sender)  # reload its ids if it sends again

    async def _load_seen(self, conn: AsyncConnection | None, batch: list[_Pending]) -> None:
        """The first time a device sends after a (re)start, learn the ids it already stored,
        so a resend of a message accepted before the restart is still recognised."""
        senders = {p.dedupe[0] for p in batch if p.dedupe is not None} - self._loaded_senders
        if not senders:
            return
        if conn is None:
            assert self.sqlite is not None
            rows = await self.sqlite.senders_ids(senders)
        else:
            rows = (await conn.execute(select(
                envelopes.c.sender_device, envelopes.c.client_id, envelopes.c.epoch,
                envelopes.c.kind, envelopes.c.created_at).where(
                    envelopes.c.sender_device.in_(senders),
                    envelopes.c.client_id.is_not(None)))).all()
        for sender, client_id, epoch, kind, sent_at in rows:
            after = epoch + 1 if kind == "commit" and epoch is not None else epoch
            self._remember((sender, client_id), Stored(after, sent_at))
        self._loaded_senders |= senders

    async def run(self, op: Op) -> Any:
        return await self.submit(op)

    async def _run(self) -> None:
        while True:
            first = await self.queue.get()
            batch = [first]
            while len(batch) < 2000 and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                for run in _runs(batch, self.sqlite is not None):
                    await self._execute_retrying(run)
            finally:
                for _ in batch:
                    self.queue.task_done()

    async def _execute_retrying(self, batch: list[_Pending]) -> None:
        try:
            try:
                await self._execute(batch)
            except (IntegrityError, sqlite3.IntegrityError):
                # the admin CLI appended audit records since: chain after them, retry
                conn = await self._connection()
                async with conn.begin():
                    self.chain = await AuditChain.load(conn)
                await self._execute(batch)
        except Exception:  # the batch failed to commit: every op in it fails
            log.exception("writer batch failed")
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(RuntimeError("storage failure"))

    async def _execute(self, batch: list[_Pending]) -> None:
        mark = self.chain.mark()
        ids = (self._envelope_id, self._seq)
        tx: Tx | None = None
        # SQLite's hot path, which pushes the batch at its commit, before flush returns
        sqlite = self.sqlite if batch[0].fast else None
        try:
            if sqlite is not None:
                await self._load_seen(None, batch)
                tx = Tx(None, self)
                results = await self._run_ops(tx, batch)
                try:
                    await sqlite.flush(*self._rows(tx), committed=functools.partial(
                        self._deliver, tx.envelopes))
                except NotDurableError as e:
                    # Stored and delivered, but not on the disk for sure: the state stays as
                    # the database has it; the senders resend, which is recognised.
                    log.error("%s", e)
                    self._committed(tx, [(p, False, RuntimeError("storage failure"))
                                         for p, _, _ in results], mark, delivered=True)
                    return
            else:
                conn = await self._connection()
                async with conn.begin():
                    await lock_for_writing(conn)
                    await self._load_seen(conn, batch)
                    tx = Tx(conn, self)
                    results = await self._run_ops(tx, batch)
                    await self._flush(conn, tx)
        except BaseException:
            self.chain.reset(mark)
            self._envelope_id, self._seq = ids
            for fn in reversed(tx.undo if tx else []):
                fn()
            raise
        self._committed(tx, results, mark, delivered=sqlite is not None)

    async def _run_ops(self, tx: Tx, batch: list[_Pending]) -> list[tuple[_Pending, bool, Any]]:
        results: list[tuple[_Pending, bool, Any]] = []
        for p in batch:
            n_audit, n_env, n_after = (len(tx.audit_events), len(tx.envelopes),
                                       len(tx.after_commit))
            try:
                if p.savepoint:
                    assert tx.conn is not None
                    async with tx.conn.begin_nested():
                        value = await p.op(tx)
                else:
                    value = await p.op(tx)
                results.append((p, True, value))
            except Exception as e:  # this op fails alone
                tx.rollback_to(n_audit, n_env, n_after)
                results.append((p, False, e))
        return results

    def _committed(self, tx: Tx, results: list[tuple[_Pending, bool, Any]],
                   mark: tuple[int, bytes], *, delivered: bool) -> None:
        """Once durable (or committed, for a NotDurableError), and only then: remember ids,
        deliver (unless ``delivered`` already at the commit), answer."""
        self.batches += 1
        if self.on_audit_head is not None and self.chain.mark() != mark:
            self.on_audit_head(self.chain.seq, self.chain.head)
        for e in tx.envelopes:
            if e.sender_device is not None and e.client_id is not None:
                self._remember((e.sender_device, e.client_id), Stored(_epoch_after(e), e.sent_at))
        for fn in tx.after_commit:
            fn()
        if not delivered:
            self._deliver(tx.envelopes)
        for p, ok, value in results:
            if p.future.done():
                continue
            if ok:
                p.future.set_result(value)
            else:
                p.future.set_exception(value)

    def _deliver(self, envelopes: list[NewEnvelope]) -> None:
        if envelopes:
            self.on_delivered(envelopes)

    def _rows(self, tx: Tx) -> tuple[list[dict[str, Any]], ...]:
        expires = tx.now + self.message_ttl
        envs = [{"id": e.id, "sender_device": e.sender_device, "client_id": e.client_id,
                 "group_id": e.group_id, "kind": e.kind, "epoch": e.epoch,
                 "payload": e.payload, "created_at": e.sent_at, "expires_at": expires}
                for e in tx.envelopes]
        boxes = [{"seq": s, "device_id": d, "envelope_id": e.id}
                 for e in tx.envelopes for d, s in e.seqs]
        acked = [{"d": d, "s": s} for d, s in tx.acked]
        return envs, boxes, self.chain.rows(tx.audit_events), acked

    async def _flush(self, conn: AsyncConnection, tx: Tx) -> None:
        envs, boxes, audit_rows, acked = self._rows(tx)
        if envs:
            await conn.execute(insert(envelopes), envs)
        if boxes:
            await conn.execute(insert(mailbox), boxes)
        await insert_rows(conn, audit_rows)
        if acked:
            await conn.execute(
                delete(mailbox).where(mailbox.c.device_id == bindparam("d"),
                                      mailbox.c.seq == bindparam("s")), acked)


def _runs(batch: list[_Pending], split_fast: bool) -> list[list[_Pending]]:
    """Consecutive fast ops form a run of their own; order between runs is kept."""
    if not split_fast:
        return [batch]
    runs: list[list[_Pending]] = []
    for p in batch:
        if runs and runs[-1][0].fast == p.fast:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs
