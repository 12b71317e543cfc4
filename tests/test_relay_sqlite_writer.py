"""The relay's SQLite hot path commits a batch, lets the writer push it to the recipients, then
syncs it: a real SQLite file with the relay's schema; only the fsync is wrapped, to see when
it runs and to make it fail."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.db import make_engine, sqlite_url
from relay.migrate import upgrade
from relay.sqlite_writer import NotDurableError, SqliteWriter
from relay.writer import NewEnvelope, Op, Tx, Writer


@pytest.fixture
def database(tmp_path: Path) -> Path:
    upgrade(sqlite_url(tmp_path))
    return tmp_path / "relay.db"


def _envelope(n: int) -> dict[str, Any]:
    return {"id": n, "sender_device": "dev-a", "client_id": f"c{n}", "group_id": b"g" * 32,
            "kind": "application", "epoch": 3, "payload": b"ciphertext", "created_at": 1.0,
            "expires_at": 2.0}


def _stored(database: Path) -> list[str]:
    """What another connection reads: what is committed."""
    with sqlite3.connect(database) as db:
        return [row[0] for row in db.execute("SELECT client_id FROM envelopes ORDER BY id")]


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Each fsync of the write-ahead log, by the file it syncs; the real one still runs."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    yield synced


def test_a_batch_is_pushed_once_committed_and_answered_once_synced(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The push may not wait for the fsync, nor the answer go before it."""
    pushed = threading.Event()
    order: list[str] = []
    real = os.fsync

    def slow_fsync(fd: int) -> None:
        # The push runs on the event loop while this thread syncs: it must come first.
        assert pushed.wait(10), "the batch was not pushed before its fsync ended"
        order.append("synced")
        real(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)

    async def run() -> None:
        writer = SqliteWriter(database, "FULL")

        def committed() -> None:
            order.append(f"pushed, with {_stored(database)} committed")
            pushed.set()

        try:
            await writer.flush([_envelope(1), _envelope(2)], [], [], [], committed)
            order.append("answered")
        finally:
            await writer.close()

    asyncio.run(run())
    assert order == ["pushed, with ['c1', 'c2'] committed", "synced", "answered"]


def test_every_batch_is_synced_at_full_and_none_at_normal(
    database: Path, fsyncs: list[str]
) -> None:
    async def run(synchronous: str, first: int) -> None:
        writer = SqliteWriter(database, synchronous)
        try:
            for n in range(first, first + 3):
                await writer.flush([_envelope(n)], [], [], [], lambda: None)
        finally:
            await writer.close()

    asyncio.run(run("FULL", 1))
    assert fsyncs == [str(database) + "-wal"] * 3
    asyncio.run(run("NORMAL", 4))
    assert len(fsyncs) == 3  # the operator chose speed over a power cut's last commits
    assert _stored(database) == [f"c{n}" for n in range(1, 7)]


def test_a_failed_sync_is_told_apart_from_a_failed_write(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that committed but did not sync is stored (the writer keeps its state as the
    database has it); one that did not commit is not, and nobody hears of it."""
    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    pushed: list[float] = []

    async def run() -> None:
        writer = SqliteWriter(database, "FULL")
        try:
            with pytest.raises(NotDurableError, match="committed but did not sync"):
                await writer.flush([_envelope(1)], [], [], [],
                                   lambda: pushed.append(time.monotonic()))
            assert len(pushed) == 1
            with pytest.raises(sqlite3.IntegrityError):  # the same id again: nothing written
                await writer.flush([_envelope(2), _envelope(1)], [], [], [],
                                   lambda: pushed.append(time.monotonic()))
            assert len(pushed) == 1
        finally:
            await writer.close()

    asyncio.run(run())
    assert _stored(database) == ["c1"]


def test_the_writer_answers_no_sender_of_a_batch_that_did_not_sync_and_knows_it_at_a_resend(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recipients got it at the commit; the sender hears "storage failure" and resends;
    the resend is recognised (not stored twice), and the next batch takes new ids."""
    real = os.fsync
    failing = True

    def fsync(fd: int) -> None:
        if failing:
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    pushed: list[list[str | None]] = []

    def send(client_id: str) -> Op:
        async def op(tx: Tx) -> str:
            if tx.seen(("dev-a", client_id)) is not None:
                return "already stored"
            tx.enqueue(NewEnvelope("dev-a", client_id, b"g" * 32, "application", 3,
                                   b"ciphertext", ["dev-b"]))
            return "stored"
        return op

    async def run() -> None:
        nonlocal failing
        url = sqlite_url(database.parent)
        engine = make_engine(url, writer=True)
        writer = Writer(engine, message_ttl=3600, sqlite=SqliteWriter(database, "FULL"),
                        on_delivered=lambda envs: pushed.append([e.client_id for e in envs]))
        await writer.start()
        try:
            first = writer.submit(send("c1"), fast=True, dedupe=("dev-a", "c1"))
            with pytest.raises(RuntimeError, match="storage failure"):
                await first
            assert pushed == [["c1"]]
            failing = False
            assert await writer.submit(send("c1"), fast=True, dedupe=("dev-a", "c1")) == (
                "already stored")
            assert await writer.submit(send("c2"), fast=True, dedupe=("dev-a", "c2")) == "stored"
            assert pushed == [["c1"], ["c2"]]
        finally:
            await writer.stop()
            await engine.dispose()

    asyncio.run(run())
    assert _stored(database) == ["c1", "c2"]


def test_a_batch_that_writes_nothing_costs_no_fsync(database: Path, fsyncs: list[str]) -> None:
    """A batch of resends already stored (the relay answers them from memory) writes no row."""
    async def run() -> None:
        writer = SqliteWriter(database, "FULL")
        try:
            await writer.flush([], [], [], [], lambda: None)
            await writer.flush([_envelope(1)], [], [], [], lambda: None)
        finally:
            await writer.close()

    asyncio.run(run())
    assert len(fsyncs) == 1
    assert _stored(database) == ["c1"]
