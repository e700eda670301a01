"""SQLite key store: the embedded default.

WAL mode with `synchronous=FULL`, so a write the API has acknowledged survives
a crash or power loss. Writes run one at a time on a dedicated thread (SQLite
has one writer anyway) inside `BEGIN IMMEDIATE` transactions; reads are single
primary-key lookups on their own connection, small enough to run on the event
loop. `secure_delete` zeroes erased sealed keys instead of leaving them in
free pages.

The file and its side files are 0600 (`hearth.files`). Its integrity is
checked once at open (`PRAGMA quick_check`, one read of the whole file); a
file that fails is opened anyway but refuses every call with
`StorageUnavailable`, and `health` says why. Any other SQLite failure (a lock
held by another process past the busy timeout, a full disk) fails only that
call with `StorageUnavailable`; the next call that works makes `health`
healthy again, and `ping` probes the write lock while it is failing.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from hearth.files import private_sqlite_connect, quick_check
from hearth.storage import StorageHealth, StorageUnavailable, describe, is_storage_failure
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


BUSY_TIMEOUT = 30.0  # seconds a write waits for a lock held by another process
PROBE_TIMEOUT_MS = 100  # how long `ping`'s write probe waits for that lock


def _connect(path: Path, busy_timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    return private_sqlite_connect(
        path,
        timeout=busy_timeout,
        pragmas=("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON"),
    )


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
        self.health = StorageHealth("keys")
        self._busy_timeout = BUSY_TIMEOUT

    @classmethod
    async def open(cls, path: Path, *, busy_timeout: float = BUSY_TIMEOUT) -> SqliteKeyStore:
        """Create the file (mode 0600) and schema if needed, and open it.

        Raises RuntimeError for a schema newer than this code. A file that
        fails its integrity check opens broken (see the module docstring).
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keystore-writer")
        loop = asyncio.get_running_loop()
        try:
            writer, broken = await loop.run_in_executor(
                executor, cls._open_writer, path, busy_timeout
            )
            reader = _connect(path, busy_timeout) if broken is None else sqlite3.connect(":memory:")
        except BaseException:
            executor.shutdown(wait=True)
            raise
        store = cls(path, writer, reader, executor)
        store._busy_timeout = busy_timeout
        if broken is not None:
            store.health.broken = (
                f"keys database unusable ({broken}); restore it from a backup and restart"
            )
            store.health.failed(store.health.broken)
        return store

    @staticmethod
    def _open_writer(path: Path, busy_timeout: float) -> tuple[sqlite3.Connection, str | None]:
        try:
            conn = _connect(path, busy_timeout)
        except sqlite3.DatabaseError as e:
            return sqlite3.connect(":memory:", check_same_thread=False), describe(e)
        try:
            broken = quick_check(conn)
            if broken is not None:
                return conn, broken
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{path} has schema {version}, newer than this keyserver")
            if version < SCHEMA_VERSION:
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return conn, None

    def _check(self) -> None:
        if self._closed:
            raise RuntimeError("key store is closed")
        self.health.refuse_if_broken()

    def _failed(self, e: BaseException) -> StorageUnavailable:
        reason = describe(e)
        self.health.failed(reason)
        return StorageUnavailable(f"key storage unavailable: {reason}; retry later")

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._check()
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, self._transaction, fn)
        except sqlite3.Error as e:
            if is_storage_failure(e):
                raise self._failed(e) from e
            raise
        self.health.succeeded()
        return result

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:  # the original error says more; the next BEGIN retries
                    pass
            raise
        return result

    def _probe_write(self) -> None:
        """Take and release the write lock, waiting only briefly for it."""
        conn = self._writer
        conn.execute(f"PRAGMA busy_timeout = {PROBE_TIMEOUT_MS}")
        try:
            self._transaction(lambda _conn: None)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")

    def _read(self, did: Did) -> KeyRecord | None:
        try:
            rows = self._reader.execute(_SELECT, (did,)).fetchall()
        except sqlite3.Error as e:
            if is_storage_failure(e):
                raise self._failed(e) from e
            raise
        return _record(did, rows)

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
        self._check()
        return self._read(did)

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
        self._check()
        try:
            self._reader.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.Error as e:
            raise self._failed(e) from e
        if self.health.error is not None:  # did the cause go? (a read cannot tell a lock)
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self._probe_write)
            except sqlite3.Error as e:
                raise self._failed(e) from e
            self.health.succeeded()

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
