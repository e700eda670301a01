"""The SQLite mailbox passes the contract, on disk and in memory, and survives a reopen."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from router.mailbox import Mailbox, PutResult, QuotaExceeded, Quotas, SqliteMailbox
from tests.notify.mailbox_contract import BOB, Clock, MailboxContract, mail


class TestSqliteFile(MailboxContract):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.dir = tmp_path

    async def make(self, quotas: Quotas, clock: Callable[[], float]) -> Mailbox:
        return await SqliteMailbox.open(self.dir / "mailbox.sqlite3", quotas, clock)


class TestSqliteMemory(MailboxContract):
    async def make(self, quotas: Quotas, clock: Callable[[], float]) -> Mailbox:
        return await SqliteMailbox.open(":memory:", quotas, clock)


async def test_reopen_loses_nothing(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "mailbox.sqlite3"
    box = await SqliteMailbox.open(path, clock=clock)
    for i in range(3):
        await box.put(mail(clock, f"m{i}"), {"d1", "d2"})
    await box.ack(BOB, "d1", "m0")
    await box.ack(BOB, "d1", "m1")
    await box.ack(BOB, "d2", "m1")
    await box.add_device(BOB, "d1")
    await box.close()
    # WAL and synchronous=FULL: what put() acknowledged is on disk
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    box = await SqliteMailbox.open(path, clock=clock)
    try:
        assert [m.msg_id for m in await box.pending(BOB, "d1")] == ["m2"]
        assert [m.msg_id for m in await box.pending(BOB, "d2")] == ["m0", "m2"]
        assert await box.put(mail(clock, "m1"), {"d1"}) is PutResult.ALREADY_DELIVERED
        assert await box.devices(BOB) == {"d1"}
    finally:
        await box.close()


async def test_closed_mailbox_refuses(tmp_path: Path) -> None:
    box = await SqliteMailbox.open(":memory:")
    await box.close()
    await box.close()
    with pytest.raises(RuntimeError):
        await box.devices(BOB)


async def test_a_file_from_before_byte_quotas_is_upgraded(tmp_path: Path) -> None:
    """Undelivered mail stored before the `size` column counts against byte quotas."""
    path = tmp_path / "mailbox.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE mail (seq INTEGER PRIMARY KEY, sender TEXT NOT NULL,"
            " msg_id TEXT NOT NULL, recipient TEXT NOT NULL, sent_at INTEGER NOT NULL,"
            " expires_at INTEGER NOT NULL, urgency TEXT NOT NULL, body BLOB NOT NULL,"
            " done INTEGER NOT NULL DEFAULT 0, UNIQUE (sender, msg_id))"
        )
        db.execute("CREATE INDEX mail_sender ON mail (sender, done)")
        db.execute(
            "CREATE TABLE mail_device (seq INTEGER NOT NULL REFERENCES mail (seq)"
            " ON DELETE CASCADE, device TEXT NOT NULL, PRIMARY KEY (seq, device)) WITHOUT ROWID"
        )
        clock = Clock()
        old = mail(clock, "old", body=b"x" * 600)
        db.execute(
            "INSERT INTO mail (sender, msg_id, recipient, sent_at, expires_at, urgency, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (old.sender, old.msg_id, old.recipient, old.sent_at, old.expires_at,
             old.urgency.value, old.body),
        )  # fmt: skip
        db.execute("INSERT INTO mail_device VALUES (1, '*')")
    db.close()
    box = await SqliteMailbox.open(path, Quotas(recipient_bytes=1000, share=1.0), clock=clock)
    try:
        assert [m.body for m in await box.pending(BOB, None)] == [old.body]
        with pytest.raises(QuotaExceeded) as e:
            await box.put(mail(clock, "new", body=b"y" * 500), {"d1"})
        assert (e.value.kind, e.value.unit) == ("recipient", "bytes")
        assert await box.put(mail(clock, "new", body=b"y" * 400), {"d1"}) is PutResult.STORED
    finally:
        await box.close()
