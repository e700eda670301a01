"""The storage contract against SQLite, plus what only SQLite promises."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path

import pytest

from keyserver.storage import KeyStore
from keyserver.storage.contract import ALICE, KeyStoreContract, OpenStore, new_keys
from keyserver.storage.sqlite import SqliteKeyStore


class TestSqliteKeyStore(KeyStoreContract):
    @pytest.fixture
    def open_store(self, tmp_path: Path) -> OpenStore:
        async def open_() -> KeyStore:
            return await SqliteKeyStore.open(tmp_path / "ks" / "keys.sqlite3")

        return open_


async def test_file_is_private_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    store = await SqliteKeyStore.open(path)
    try:
        await store.create(ALICE, new_keys(), 1000)
        for name in (path, path.with_name(path.name + "-wal")):
            assert stat.S_IMODE(name.stat().st_mode) == 0o600, name
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            conn.close()
    finally:
        await store.close()


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        await SqliteKeyStore.open(path)


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await SqliteKeyStore.open(tmp_path / "k.sqlite3")
    await store.close()
    with pytest.raises(RuntimeError):
        await store.get(ALICE)
    with pytest.raises(RuntimeError):
        await store.create(ALICE, new_keys(), 1)


async def test_concurrent_creates_across_connections_store_one(tmp_path: Path) -> None:
    """Two stores on one file (as two processes would be): still exactly one keypair."""
    path = tmp_path / "keys.sqlite3"
    a = await SqliteKeyStore.open(path)
    b = await SqliteKeyStore.open(path)
    try:
        results = await asyncio.gather(
            *(store.create(ALICE, new_keys(), 1000) for store in [a, b] * 25)
        )
        assert len(set(results)) == 1
        assert await a.get(ALICE) == await b.get(ALICE) == results[0]
    finally:
        await a.close()
        await b.close()
