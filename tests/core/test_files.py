"""hearth.files and hearth.storage: private modes whatever the umask, integrity, health words."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.files import private_dir, private_file, private_sqlite_connect, quick_check
from hearth.storage import StorageHealth, describe, is_storage_failure, storage_status
from tests.faults import corrupt_middle_page, locked, not_private


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o002)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("loose_umask")
def test_private_dir_creates_missing_parents_and_tightens_itself(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    private_dir(shared / "data" / "router")
    assert mode(shared) == 0o755  # an existing parent is not ours to change
    assert mode(shared / "data") == mode(shared / "data" / "router") == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o775)
    private_dir(loose, tighten=False)  # e.g. the folder an operator named for one file
    assert mode(loose) == 0o775
    private_dir(loose)
    assert mode(loose) == 0o700


@pytest.mark.usefixtures("loose_umask")
def test_private_file_creates_0600_and_tightens_an_existing_file(tmp_path: Path) -> None:
    new = private_file(tmp_path / "new")
    assert mode(new) == 0o600 and new.read_bytes() == b""
    old = tmp_path / "old"
    old.write_bytes(b"kept")
    old.chmod(0o644)
    private_file(old)
    assert mode(old) == 0o600 and old.read_bytes() == b"kept"


@pytest.mark.usefixtures("loose_umask")
def test_sqlite_database_and_side_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "db" / "x.sqlite3"
    db = private_sqlite_connect(path)
    try:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
        names = {p.name for p in path.parent.iterdir()}
        assert {"x.sqlite3", "x.sqlite3-wal", "x.sqlite3-shm"} <= names
        assert not_private(path.parent) == {}
    finally:
        db.close()
    # Side files left readable by an older version are tightened at the next open.
    wal = path.with_name("x.sqlite3-wal")
    wal.write_bytes(b"")
    wal.chmod(0o644)
    private_sqlite_connect(path).close()
    assert not_private(path.parent) == {}


def test_quick_check_finds_a_corrupt_page(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    db = private_sqlite_connect(path)
    db.execute("CREATE TABLE t (x BLOB)")
    for _ in range(100):
        db.execute("INSERT INTO t VALUES (?)", (os.urandom(300),))
    assert quick_check(db) is None
    db.close()
    corrupt_middle_page(path)
    db = private_sqlite_connect(path)
    try:
        problem = quick_check(db)
        assert problem is not None and problem.startswith("integrity check failed")
    finally:
        db.close()


def test_storage_failures_are_named_without_paths(tmp_path: Path) -> None:
    path = tmp_path / "secret-name.sqlite3"
    db = private_sqlite_connect(path, timeout=0)
    try:
        with locked(path):
            with pytest.raises(sqlite3.OperationalError) as e:
                db.execute("BEGIN IMMEDIATE")
        assert is_storage_failure(e.value)
        assert describe(e.value) == "database is locked by another process"
        with pytest.raises(sqlite3.IntegrityError) as integrity:
            db.execute("CREATE TABLE u (x UNIQUE)")
            db.execute("INSERT INTO u VALUES (1), (1)")
        assert not is_storage_failure(integrity.value)
    finally:
        db.close()


def test_storage_status_words() -> None:
    a, b = StorageHealth("mailbox"), StorageHealth("push-registry")
    assert storage_status([a, b]) == "ok"
    a.failed("disk is full")
    b.broken = "push registry database unusable (integrity check failed: x)"
    assert storage_status([a, b]) == (
        "error: mailbox: disk is full; push-registry: push registry database unusable"
        " (integrity check failed: x)"
    )
    a.succeeded()
    b.succeeded()  # a file found corrupt at start stays refused
    assert storage_status([a, b]).startswith("error: push-registry")
