"""One SQLite connection on its own thread, with group commit.

Every call runs on that thread; writes queued while a transaction runs are
committed together (one fsync), each inside a savepoint so one failing
operation is undone alone and its exception handed back to its caller.
Used by the mailbox and the push registry; any store with small synchronous
methods can use it.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Op:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode, WAL, synchronous=FULL, foreign keys on."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


class SqliteThread:
    """Runs functions against `db` on one thread. Call `close()` when done."""

    def __init__(self, db: sqlite3.Connection, name: str) -> None:
        self.db = db
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.closed = False

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn()` in a transaction on the database thread and return its result."""
        if self.closed:
            raise RuntimeError("store is closed")
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
        db = self.db
        while True:
            op = self._ops.get()
            if op is None:
                db.close()
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
                db.close()
                return

    def _run_batch(self, batch: list[_Op]) -> None:
        db = self.db
        results: list[tuple[_Op, bool, Any]] = []
        db.execute("BEGIN IMMEDIATE")
        for item in batch:
            db.execute("SAVEPOINT op")
            try:
                value = item.fn()
            except Exception as e:  # handed back to the caller
                db.execute("ROLLBACK TO op")
                db.execute("RELEASE op")
                results.append((item, False, e))
                continue
            db.execute("RELEASE op")
            results.append((item, True, value))
        try:
            db.execute("COMMIT")
        except sqlite3.Error as e:
            db.execute("ROLLBACK")
            results = [(item, False, e) for item, _, _ in results]
        for item, ok, value in results:
            try:
                item.future.get_loop().call_soon_threadsafe(_settle, item.future, ok, value)
            except RuntimeError:  # the caller's loop is gone
                pass


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
