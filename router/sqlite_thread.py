"""One SQLite connection on its own thread, with group commit.

Every call runs on that thread; writes queued while a transaction runs are
committed together (one fsync), each inside a savepoint so one failing
operation is undone alone and its exception handed back to its caller.
Used by the mailbox and the push registry; any store with small synchronous
methods can use it.

Storage failures (the file locked by another process for longer than the
busy timeout, the disk full, an I/O error, corruption) fail the whole batch:
it is rolled back and every caller in it gets `StorageUnavailable`. The
thread never stops on them. When idle it probes the database (`BEGIN
IMMEDIATE` + `ROLLBACK`, waiting at most `PROBE_BUSY_MS` for the lock: could
a write start now?): every `retry_interval` seconds while failing, so
`health` turns healthy once the cause is gone even without traffic, and
every `probe_interval` seconds while healthy, so a lock taken by another
process shows in `health` without traffic too. Any batch updates `health` as
well. Callers that were refused retry on their own.

A file that failed its integrity check at start (`broken=`) is never
touched: every call is refused at once with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hearth.files import private_sqlite_connect
from hearth.storage import (
    StorageHealth,
    StorageUnavailable,
    describe,
    is_storage_failure,
)

T = TypeVar("T")
log = logging.getLogger("hearth.router.storage")

DEFAULT_BUSY_TIMEOUT = 5.0
DEFAULT_PROBE_INTERVAL = 5.0
PROBE_BUSY_MS = 100  # how long a probe waits for another process's lock


@dataclass(slots=True)
class _Op:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]


def connect(path: Path | str, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> sqlite3.Connection:
    """A private (0600) connection in autocommit mode, WAL, synchronous=FULL, foreign keys on.

    `busy_timeout`: seconds a transaction waits for a lock held by another
    process before its batch fails.
    """
    return private_sqlite_connect(
        path,
        timeout=busy_timeout,
        pragmas=("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"),
    )


class SqliteThread:
    """Runs functions against `db` on one thread. Call `close()` when done.

    `health` says whether the last batch (or probe) worked; pass `broken`
    (a reason) for a database that failed its integrity check at start.
    `probe_interval` 0 turns the idle probe while healthy off.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        name: str,
        *,
        broken: str | None = None,
        retry_interval: float = 1.0,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
    ) -> None:
        self.db = db
        self.health = StorageHealth(name)
        self.health.broken = broken
        self._retry_interval = retry_interval
        self._probe_interval = probe_interval
        self._busy_ms = int(DEFAULT_BUSY_TIMEOUT * 1000)
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.closed = False

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn()` in a transaction on the database thread and return its result.

        Raises StorageUnavailable when the database cannot be used now; the
        operation then had no effect.
        """
        if self.closed:
            raise RuntimeError("store is closed")
        self.health.refuse_if_broken()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._ops.put(_Op(fn, future))
        return await future

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._ops.put(None)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self.db.close()

    def _loop(self) -> None:
        if self.health.broken is None:
            with contextlib.suppress(sqlite3.Error):
                self._busy_ms = int(self.db.execute("PRAGMA busy_timeout").fetchone()[0])
        while True:
            timeout: float | None = None
            if self.health.broken is not None:
                pass  # never touched: calls are refused before they get here
            elif self.health.error is not None:
                timeout = self._retry_interval
            elif self._probe_interval > 0:
                timeout = self._probe_interval
            try:
                op = self._ops.get(timeout=timeout)
            except queue.Empty:
                self._probe()
                continue
            if op is None:
                return
            batch = [op]
            stop = False
            while True:
                try:
                    more = self._ops.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list[_Op]) -> None:
        try:
            results = self._transaction(batch)
        except Exception as e:  # the batch as a whole failed; the thread goes on
            self._rollback()
            reason = describe(e)
            if not isinstance(e, sqlite3.Error):
                log.exception("%s: a batch failed unexpectedly", self.health.name)
            self.health.failed(reason)
            error = StorageUnavailable(f"storage unavailable: {reason}; retry later")
            results = [(item, False, error) for item in batch]
        else:
            self.health.succeeded()
        for item, ok, value in results:
            try:
                item.future.get_loop().call_soon_threadsafe(_settle, item.future, ok, value)
            except RuntimeError:  # the caller's loop is gone
                pass

    def _transaction(self, batch: list[_Op]) -> list[tuple[_Op, bool, Any]]:
        db = self.db
        results: list[tuple[_Op, bool, Any]] = []
        db.execute("BEGIN IMMEDIATE")
        for item in batch:
            db.execute("SAVEPOINT op")
            try:
                value = item.fn()
            except Exception as e:
                if is_storage_failure(e):
                    raise  # SQLite may have rolled back the whole transaction already
                db.execute("ROLLBACK TO op")  # an answer about this operation alone
                db.execute("RELEASE op")
                results.append((item, False, e))
                continue
            db.execute("RELEASE op")
            results.append((item, True, value))
        db.execute("COMMIT")
        return results

    def _rollback(self) -> None:
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error as e:  # the next batch or probe tries again
                log.warning("%s: rollback failed: %s", self.health.name, describe(e))

    def _probe(self) -> None:
        db = self.db
        try:
            self._rollback()
            # Briefly: an op queued meanwhile waits for the probe.
            db.execute(f"PRAGMA busy_timeout = {PROBE_BUSY_MS}")
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("ROLLBACK")
            finally:
                db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        except sqlite3.Error as e:
            self._rollback()
            self.health.failed(describe(e))
        else:
            self.health.succeeded()


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
