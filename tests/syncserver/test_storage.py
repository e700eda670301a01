"""Both storage implementations pass the contract; SQLite specifics on top."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncserver.storage import Access, MemoryStorage, SqliteStorage, Storage
from tests.syncserver.ids import new_document_id
from tests.syncserver.storage_contract import ALICE, StorageContract, change


class TestMemoryStorage(StorageContract):
    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        store = MemoryStorage()
        yield store
        store.close()


class TestSqliteStorage(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[Storage]:
        store = SqliteStorage(tmp_path / "sync.sqlite3")
        yield store
        store.close()

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Callable[[], Storage]:
        return lambda: SqliteStorage(tmp_path / "sync.sqlite3")


def test_sqlite_is_wal_and_full_sync(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "s.sqlite3")
    try:
        db = store._db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()


def test_sqlite_commit_is_visible_to_another_connection_at_once(tmp_path: Path) -> None:
    """A committed change is in the database file (WAL) when commit returns."""
    path = tmp_path / "s.sqlite3"
    store = SqliteStorage(path)
    doc = new_document_id()
    store.commit(doc, [change(1)], create=Access(ALICE))
    other = sqlite3.connect(path)
    try:
        (count,) = other.execute("SELECT COUNT(*) FROM changes").fetchone()
        assert count == 1
    finally:
        other.close()
        store.close()


def test_sqlite_failed_commit_changes_nothing(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "s.sqlite3")
    doc = new_document_id()
    store.commit(doc, [change(1)], create=Access(ALICE))

    class Boom(Exception):
        pass

    class BadStates(dict[str, bytes]):
        def items(self):  # type: ignore[no-untyped-def]
            raise Boom

    with pytest.raises(Boom):
        store.commit(doc, [change(2)], sync_states=BadStates({"s": b"x"}))
    assert list(store.changes(doc)) == [change(1)]
    assert store.stats().changes == 1
    store.close()
