"""The mailbox and the push registry go on after storage failures and say so in `health`.

A lock held by another process, a full disk (SQLite's page limit, which
fails the same way) and a corrupt file, on real files.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from hearth.storage import StorageUnavailable
from router.mailbox import PutResult, Quotas, SqliteMailbox
from router.push import PushSubscription
from router.push_store import SqlitePushRegistry
from router.urgency import Level
from tests.faults import corrupt_middle_page, locked, not_private
from tests.notify.helpers import MS, within
from tests.notify.mailbox_contract import ALICE, BOB, CAROL, Clock, mail

BUSY = 100 * MS  # how long a write waits for the other process's lock
RETRY = 20 * MS  # how often a failing store probes the file


async def healthy(health_of: SqliteMailbox | SqlitePushRegistry) -> None:
    """Wait (bounded) until the store's own probe finds it working again."""

    async def poll() -> None:
        # The state is set by the store's own thread: there is no event to wait on.
        while health_of.health.problem is not None:  # noqa: ASYNC110
            await asyncio.sleep(RETRY)

    await within(poll())


async def open_box(path: Path, clock: Clock, quotas: Quotas | None = None) -> SqliteMailbox:
    return await SqliteMailbox.open(path, quotas, clock, busy_timeout=BUSY, retry_interval=RETRY)


async def test_a_lock_fails_the_batch_and_the_mailbox_recovers(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "mailbox.sqlite3"
    box = await open_box(path, clock)
    try:
        assert await box.put(mail(clock, "before"), {"d1"}) is PutResult.STORED
        assert box.health.problem is None
        with locked(path):
            batch = [box.put(mail(clock, f"m{i}", sender=s), {"d1"}) for i, s in enumerate(
                (ALICE, CAROL))]  # fmt: skip
            results = await within(asyncio.gather(*batch, return_exceptions=True))
            assert all(isinstance(r, StorageUnavailable) for r in results), results
            assert "locked" in str(results[0])
            assert box.health.error == "database is locked by another process"
            with pytest.raises(StorageUnavailable):
                await within(box.pending(BOB, "d1"))
        await healthy(box)  # no traffic needed: the store probes by itself
        # Nothing of the failed batch was stored; everything works again.
        assert [m.msg_id for m in await box.pending(BOB, "d1")] == ["before"]
        assert await box.put(mail(clock, "m0"), {"d1"}) is PutResult.STORED
        assert [m.msg_id for m in await box.ack(BOB, "d1", "before")] == ["before"]
        assert [m.msg_id for m in await box.pending(BOB, "d1")] == ["m0"]
    finally:
        await box.close()


async def test_a_full_disk_fails_the_batch_and_the_mailbox_recovers(tmp_path: Path) -> None:
    clock = Clock()
    box = await open_box(tmp_path / "mailbox.sqlite3", clock)
    big = os.urandom(30_000)
    try:
        assert await box.put(mail(clock, "small"), {"d1"}) is PutResult.STORED
        # The file may not grow any more: SQLite fails with SQLITE_FULL, as on a full disk.
        pages = await box._thread.call(
            lambda: box._thread.db.execute("PRAGMA page_count").fetchone()[0]
        )
        await box._thread.call(
            lambda: box._thread.db.execute(f"PRAGMA max_page_count = {pages}").fetchone()
        )
        with pytest.raises(StorageUnavailable, match="disk is full"):
            await box.put(mail(clock, "big", body=big), {"d1"})
        assert box.health.error == "disk is full"
        # The writer thread lives on: reads still answer, and space freed is used.
        await box._thread.call(
            lambda: box._thread.db.execute("PRAGMA max_page_count = 1000000").fetchone()
        )
        assert await box.put(mail(clock, "big", body=big), {"d1"}) is PutResult.STORED
        assert box.health.problem is None
        assert [m.msg_id for m in await box.pending(BOB, "d1")] == ["small", "big"]
    finally:
        await box.close()


async def test_a_corrupt_file_is_refused_with_a_clear_reason(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "mailbox.sqlite3"
    box = await open_box(path, clock, Quotas(per_recipient=1000, share=1.0))
    for i in range(200):
        await box.put(mail(clock, f"m{i}", body=os.urandom(300)), {"d1"})
    await box.close()
    corrupt_middle_page(path)

    box = await open_box(path, clock)
    try:
        problem = box.health.problem
        assert problem is not None and "integrity check failed" in problem, problem
        with pytest.raises(StorageUnavailable, match="integrity check failed"):
            await box.pending(BOB, "d1")
        with pytest.raises(StorageUnavailable, match="restore"):
            await box.put(mail(clock, "new"), {"d1"})
    finally:
        await box.close()


async def test_push_registry_recovers_from_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "push.sqlite3"
    reg = await SqlitePushRegistry.open(path, busy_timeout=BUSY, retry_interval=RETRY)
    sub = PushSubscription("https://push.example/1", "p256dh", "auth")
    try:
        with locked(path):
            with pytest.raises(StorageUnavailable):
                await within(reg.register(ALICE, "d1", sub, Level.ENGAGED))
            assert reg.health.error is not None
        await healthy(reg)
        await reg.register(ALICE, "d1", sub, Level.ENGAGED)
        assert [r.device for r in await reg.registrations(ALICE)] == ["d1"]
    finally:
        await reg.close()


async def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        box = await open_box(tmp_path / "router" / "mailbox.sqlite3", Clock())
        reg = await SqlitePushRegistry.open(tmp_path / "router" / "push.sqlite3")
        try:
            await box.put(mail(Clock(), "m"), {"d1"})
            await reg.register(ALICE, "d1", PushSubscription("https://p", "k", "a"), Level.BUSY)
            names = {p.name for p in (tmp_path / "router").iterdir()}
            assert {"mailbox.sqlite3-wal", "push.sqlite3-shm"} <= names, names
            assert not_private(tmp_path / "router") == {}
        finally:
            await box.close()
            await reg.close()
    finally:
        os.umask(old)
