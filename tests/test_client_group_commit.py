"""Group commit: messages sealed while an fsync runs share the next one, and none is called
durable before an fsync that followed its commit."""

from __future__ import annotations

import asyncio
import os

import pytest

from app.client.group_commit import GroupCommit
from storage.database import Database


@pytest.mark.asyncio
async def test_concurrent_commits_share_fsyncs_and_each_waits_for_one_after_it(tmp_path):
    db = Database.open(tmp_path / "cache.db", os.urandom(32), create=True)
    db.execute("CREATE TABLE sealed (n INTEGER)")
    synced_after: list[int] = []  # how many commits each fsync covered
    real_sync = db.sync

    def sync() -> None:
        covered = db.lazy_commits
        real_sync()
        synced_after.append(covered)

    db.sync = sync  # type: ignore[method-assign]  # the real fsync, counted
    commits = GroupCommit(db)
    done: list[tuple[int, int]] = []  # (commit number, fsyncs that had started by then)

    async def seal(n: int) -> None:
        with db.transaction(durable=False):
            db.execute("INSERT INTO sealed VALUES (?)", (n,))
        mine = db.lazy_commits
        await commits.durable()
        assert synced_after and max(synced_after) >= mine  # an fsync covered this commit
        done.append((mine, len(synced_after)))

    await asyncio.gather(*(seal(n) for n in range(16)))
    assert len(done) == 16 and db.lazy_commits == 16
    assert 1 <= len(synced_after) < 16  # shared, not one each
    await commits.durable()  # nothing new: no fsync
    assert len(synced_after) == len(set(synced_after))
    db.close()


def test_sync_without_a_write_ahead_log_is_harmless(tmp_path):
    db = Database.open(tmp_path / "cache.db", os.urandom(32), create=True)
    db.sync()  # a new database may have no -wal file yet, or an empty one
    db.execute("CREATE TABLE t (x)")
    db.sync()
    db.close()
