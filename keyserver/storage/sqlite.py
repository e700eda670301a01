"""SQLite key store: the embedded default.

WAL mode with `synchronous=FULL`, so a write the API has acknowledged survives
a crash or power loss. Writes run one at a time on a dedicated thread (SQLite
has one writer anyway) inside `BEGIN IMMEDIATE` transactions; reads are single
primary-key lookups on their own connection, small enough to run on the event
loop. `secure_delete` zeroes erased sealed keys instead of leaving them in
free pages.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from hearth.types import Did
from keyserver.storage import (
    Generation,
    KeyRecord,
    MasterKeyMismatch,
    NewKeys,
    TooManyGenerations,
)

T = TypeVar("T")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS keys (
    did TEXT NOT NULL,
    number INTEGER NOT NULL,
    signing_key BLOB NOT NULL,
    encryption_key BLOB NOT NULL,
    sealed_private BLOB,
    created_at INTEGER NOT NULL,
    valid_until INTEGER,
    PRIMARY KEY (did, number)
) WITHOUT ROWID;
"""
_SELECT = (
    "SELECT number, signing_key, encryption_key, sealed_private, created_at, valid_until"
    " FROM keys WHERE did = ? ORDER BY number DESC"
)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA secure_delete=ON")
    return conn


def _record(
    did: Did, rows: list[tuple[int, bytes, bytes, bytes | None, int, int | None]]
) -> KeyRecord | None:
    if not rows:
        return None
    gens = tuple(Generation(*row) for row in rows)
    return KeyRecord(did, gens[0], gens[1:])


class SqliteKeyStore:
    """A `KeyStore` in one SQLite file. Open with `await SqliteKeyStore.open(path)`."""

    def __init__(
        self,
        path: Path,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        executor: ThreadPoolExecutor,
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> SqliteKeyStore:
        """Create the file (mode 0600) and schema if needed, and open it."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keystore-writer")
        loop = asyncio.get_running_loop()
        try:
            writer = await loop.run_in_executor(executor, cls._open_writer, path)
            reader = _connect(path)
        except BaseException:
            executor.shutdown(wait=True)
            raise
        return cls(path, writer, reader, executor)

    @staticmethod
    def _open_writer(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # SQLite gives the -wal and -shm files the database file's mode.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = _connect(path)
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{path} has schema {version}, newer than this keyserver")
            if version < SCHEMA_VERSION:
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return conn

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("key store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transaction, fn)

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    async def bind_master_key(self, fingerprint: str) -> None:
        def bind(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT value FROM meta WHERE name = 'master_key'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta (name, value) VALUES ('master_key', ?)", (fingerprint,)
                )
            elif row[0] != fingerprint:
                raise MasterKeyMismatch(f"{self.path} was sealed under a different master key")

        await self._write(bind)

    async def get(self, did: Did) -> KeyRecord | None:
        if self._closed:
            raise RuntimeError("key store is closed")
        return _record(did, self._reader.execute(_SELECT, (did,)).fetchall())

    async def create(self, did: Did, keys: NewKeys, now: int) -> KeyRecord:
        def create(conn: sqlite3.Connection) -> KeyRecord:
            rows = conn.execute(_SELECT, (did,)).fetchall()
            if not rows:
                _insert(conn, did, 0, keys, now)
                rows = conn.execute(_SELECT, (did,)).fetchall()
            record = _record(did, rows)
            assert record is not None
            return record

        return await self._write(create)

    async def replace(
        self,
        did: Did,
        keys: NewKeys,
        now: int,
        *,
        erase_private: bool,
        max_generations: int,
    ) -> KeyRecord:
        def replace(conn: sqlite3.Connection) -> KeyRecord:
            count, top = conn.execute(
                "SELECT count(*), max(number) FROM keys WHERE did = ?", (did,)
            ).fetchone()
            if count + 1 > max_generations:
                raise TooManyGenerations(f"{did} already has {count} key generations")
            conn.execute(
                "UPDATE keys SET valid_until = ? WHERE did = ? AND valid_until IS NULL",
                (now, did),
            )
            if erase_private:
                conn.execute("UPDATE keys SET sealed_private = NULL WHERE did = ?", (did,))
            _insert(conn, did, 0 if top is None else top + 1, keys, now)
            record = _record(did, conn.execute(_SELECT, (did,)).fetchall())
            assert record is not None
            return record

        return await self._write(replace)

    async def ping(self) -> None:
        if self._closed:
            raise RuntimeError("key store is closed")
        self._reader.execute("SELECT 1").fetchone()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._reader.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._writer.close)
        self._executor.shutdown(wait=True)


def _insert(conn: sqlite3.Connection, did: Did, number: int, keys: NewKeys, now: int) -> None:
    conn.execute(
        "INSERT INTO keys (did, number, signing_key, encryption_key, sealed_private,"
        " created_at, valid_until) VALUES (?, ?, ?, ?, ?, ?, NULL)",
        (did, number, keys.signing_key, keys.encryption_key, keys.sealed_private, now),
    )
