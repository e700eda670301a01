"""Both authority stores pass the contract; SQLite specifics on top."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hearth.storage import StorageUnavailable
from syncserver.storage.authority import (
    AuthorityStore,
    MemoryAuthorityStore,
    SqliteAuthorityStore,
)
from tests.syncserver.authority_store_contract import SPACE, AuthorityStoreContract, op


class TestMemoryAuthorityStore(AuthorityStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[AuthorityStore]:
        s = MemoryAuthorityStore()
        yield s
        s.close()


class TestSqliteAuthorityStore(AuthorityStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[AuthorityStore]:
        s = SqliteAuthorityStore(tmp_path / "spaces.sqlite3")
        yield s
        s.close()

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Callable[[], AuthorityStore]:
        return lambda: SqliteAuthorityStore(tmp_path / "spaces.sqlite3")


def test_sqlite_files_are_private_and_durable(tmp_path: Path) -> None:
    store = SqliteAuthorityStore(tmp_path / "spaces.sqlite3")
    try:
        store.put_ops(SPACE, [op(1)])
        db = store._db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        for f in tmp_path.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    finally:
        store.close()


def test_sqlite_corrupt_file_refuses_calls(tmp_path: Path) -> None:
    path = tmp_path / "spaces.sqlite3"
    path.write_bytes(b"not a database at all" * 100)
    store = SqliteAuthorityStore(path)
    try:
        assert store.health.broken is not None
        with pytest.raises(StorageUnavailable):
            store.count(SPACE)
    finally:
        store.close()
