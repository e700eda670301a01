"""Space authority logs at the syncserver: signed ops stored verbatim, per space.

A small interface of its own (`AuthorityStore`), apart from the document
`Storage`: four calls, one contract suite
(`tests/syncserver/authority_store_contract.py`) that the memory and SQLite
stores both pass. Ops are kept exactly as received (the signed canonical
bytes), keyed by op id within their space; each stored op gets a sequence
number, increasing in storage order, which `get_ops(since=)` pages by. The
store checks nothing: `syncserver.spaces` verifies every op before it stores
it, and only then.

Like `Storage`, calls are synchronous and may block (a durable commit waits
for the disk); the server calls them from its one storage worker thread.

SQLite: its own file (`spaces.sqlite3`, 0600 with its side files), WAL and
`synchronous=FULL`, so `put_ops` has the ops on disk when it returns: the
server acknowledges an op only after that. Cost per op: its bytes plus ~100
bytes of row and index.

The store also keeps which space each bound document belongs to
(`bind_document`, `bindings`; docs/spaces.md "Enforcement at the syncserver"):
one row of ~200 bytes per bound document, written durably like ops.

And which spaces their owners listed in the server's directory (`set_listed`,
`listed`; docs/spaces.md "Directory"): one row of ~150 bytes per listed space,
written durably like ops.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hearth.files import private_sqlite_connect, quick_check
from hearth.storage import StorageHealth, describe


@dataclass(frozen=True, slots=True)
class StoredOp:
    """One op as stored: its sequence number (the `since` cursor), id and wire bytes."""

    seq: int
    id: str
    wire: bytes


class AuthorityStore(Protocol):
    def put_ops(self, space: str, ops: Sequence[tuple[str, bytes]]) -> int:
        """Store `(op id, wire bytes)` pairs of `space` in one durable transaction, in
        the order given; ids already stored in that space are skipped. Returns how many
        were new. When this returns, they survive a crash or power loss."""
        ...

    def get_ops(self, space: str, since: int = 0, limit: int = 1000) -> list[StoredOp]:
        """At most `limit` ops of `space` with a sequence number above `since`, in
        storage order."""
        ...

    def count(self, space: str) -> int:
        """How many ops of `space` are stored (0: the space is unknown here)."""
        ...

    def bind_document(self, document: str, space: str, by: str) -> str:
        """Bind `document` to `space` (on behalf of the DID `by`) unless it is bound
        already, in one durable transaction; returns the space it is bound to now
        (another one if it was bound before: nothing changed)."""
        ...

    def bindings(self) -> list[tuple[str, str]]:
        """Every `(document, space)` binding, in binding order."""
        ...

    def set_listed(self, space: str, listed: bool, by: str) -> None:
        """List `space` in the directory (on behalf of the DID `by`) or unlist it, in
        one durable transaction; listing a listed space or unlisting an unlisted one
        changes nothing."""
        ...

    def listed(self) -> list[str]:
        """Every listed space, in listing order."""
        ...

    @property
    def health(self) -> StorageHealth: ...

    def close(self) -> None: ...


class MemoryAuthorityStore:
    """In memory: for tests and throwaway servers. Nothing survives the process."""

    def __init__(self) -> None:
        self._spaces: dict[str, dict[str, StoredOp]] = {}
        self._seq = 0
        self._bound: dict[str, str] = {}
        self._listed: dict[str, str] = {}
        self.health = StorageHealth("space authority")

    def put_ops(self, space: str, ops: Sequence[tuple[str, bytes]]) -> int:
        held = self._spaces.setdefault(space, {})
        added = 0
        for op_id, wire in ops:
            if op_id in held:
                continue
            self._seq += 1
            held[op_id] = StoredOp(self._seq, op_id, bytes(wire))
            added += 1
        if not held:
            del self._spaces[space]
        return added

    def get_ops(self, space: str, since: int = 0, limit: int = 1000) -> list[StoredOp]:
        out: list[StoredOp] = []
        for op in self._spaces.get(space, {}).values():  # dicts keep insertion order
            if op.seq > since:
                out.append(op)
                if len(out) >= limit:
                    break
        return out

    def count(self, space: str) -> int:
        return len(self._spaces.get(space, ()))

    def bind_document(self, document: str, space: str, by: str) -> str:
        return self._bound.setdefault(document, space)

    def bindings(self) -> list[tuple[str, str]]:
        return list(self._bound.items())

    def set_listed(self, space: str, listed: bool, by: str) -> None:
        if listed:
            self._listed.setdefault(space, by)
        else:
            self._listed.pop(space, None)

    def listed(self) -> list[str]:
        return list(self._listed)

    def close(self) -> None:
        pass


SCHEMA = """
CREATE TABLE IF NOT EXISTS space_ops (
    seq INTEGER PRIMARY KEY,
    space TEXT NOT NULL,
    id TEXT NOT NULL,
    wire BLOB NOT NULL,
    UNIQUE (space, id)
);
CREATE INDEX IF NOT EXISTS space_ops_by_space ON space_ops (space, seq);
CREATE TABLE IF NOT EXISTS document_spaces (
    seq INTEGER PRIMARY KEY,
    document TEXT NOT NULL UNIQUE,
    space TEXT NOT NULL,
    bound_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS directory_listing (
    seq INTEGER PRIMARY KEY,
    space TEXT NOT NULL UNIQUE,
    listed_by TEXT NOT NULL
);
"""


class SqliteAuthorityStore:
    """In one SQLite file. Thread-safe (one connection behind a lock), as `SqliteStorage`.

    A file that fails the integrity check at open refuses every call with
    `StorageUnavailable` (and `health` says why); other SQLite failures fail
    only their call.
    """

    def __init__(self, path: Path | str, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.health = StorageHealth("space authority")
        try:
            self._db = private_sqlite_connect(
                self.path,
                timeout=busy_timeout,
                pragmas=("journal_mode=WAL", "synchronous=FULL"),
            )
        except sqlite3.DatabaseError as e:
            self._db = sqlite3.connect(":memory:", check_same_thread=False)  # never used
            self._broken(describe(e))
            return
        problem = quick_check(self._db)
        if problem is None:
            try:
                self._db.executescript(SCHEMA)
                return
            except sqlite3.DatabaseError as e:
                problem = describe(e)
        self._broken(problem)

    def _broken(self, problem: str) -> None:
        self.health.broken = (
            f"space authority database unusable ({problem}); restore it from a backup and restart"
        )
        self.health.failed(self.health.broken)

    @contextlib.contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock; storage failures become StorageUnavailable."""
        with self.health.guard(), self._lock:
            yield self._db

    def put_ops(self, space: str, ops: Sequence[tuple[str, bytes]]) -> int:
        with self._using() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                added = 0
                for op_id, wire in ops:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO space_ops (space, id, wire) VALUES (?, ?, ?)",
                        (space, op_id, wire),
                    )
                    added += cur.rowcount
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # the original error says more
                        db.execute("ROLLBACK")
                raise
        return added

    def get_ops(self, space: str, since: int = 0, limit: int = 1000) -> list[StoredOp]:
        with self._using() as db:
            rows = db.execute(
                "SELECT seq, id, wire FROM space_ops WHERE space = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (space, since, limit),
            ).fetchall()
        return [StoredOp(int(s), str(i), bytes(w)) for s, i, w in rows]

    def count(self, space: str) -> int:
        with self._using() as db:
            (n,) = db.execute("SELECT COUNT(*) FROM space_ops WHERE space = ?", (space,)).fetchone()
        return int(n)

    def bind_document(self, document: str, space: str, by: str) -> str:
        with self._using() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT OR IGNORE INTO document_spaces (document, space, bound_by)"
                    " VALUES (?, ?, ?)",
                    (document, space, by),
                )
                (bound,) = db.execute(
                    "SELECT space FROM document_spaces WHERE document = ?", (document,)
                ).fetchone()
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
        return str(bound)

    def bindings(self) -> list[tuple[str, str]]:
        with self._using() as db:
            rows = db.execute("SELECT document, space FROM document_spaces ORDER BY seq").fetchall()
        return [(str(d), str(s)) for d, s in rows]

    def set_listed(self, space: str, listed: bool, by: str) -> None:
        with self._using() as db:
            # One statement: a transaction of its own, durable at return (synchronous=FULL).
            if listed:
                db.execute(
                    "INSERT OR IGNORE INTO directory_listing (space, listed_by) VALUES (?, ?)",
                    (space, by),
                )
            else:
                db.execute("DELETE FROM directory_listing WHERE space = ?", (space,))

    def listed(self) -> list[str]:
        with self._using() as db:
            rows = db.execute("SELECT space FROM directory_listing ORDER BY seq").fetchall()
        return [str(s) for (s,) in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
