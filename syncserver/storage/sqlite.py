"""SQLite storage: one file, WAL journal, `synchronous=FULL`.

With WAL and FULL, a transaction is on disk when COMMIT returns, so a change
is durable before the server advertises it; after a crash SQLite replays or
discards the WAL itself, so a restart needs no repair step. Changes are stored
verbatim by (document, hash); their rowid order is commit order.

The file and its side files are 0600 (`hearth.files`). Its integrity is
checked once at open (`PRAGMA quick_check`, one read of the whole file); a
file that fails is opened anyway but refuses every call with
`StorageUnavailable`, and `health` says why. Any other SQLite failure (a lock
held by another process past `busy_timeout`, a full disk, an I/O error)
fails only that call with `StorageUnavailable` and shows in `health` until a
call or `check()` works again.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from hearth.base58 import b58encode
from hearth.files import private_sqlite_connect, quick_check
from hearth.storage import StorageHealth, describe
from hearth.types import ChangeHash, Did, DocumentId
from syncserver.storage.base import Access, StorageError, StorageStats, StoredChange

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    owner TEXT,
    public INTEGER NOT NULL DEFAULT 0,
    readers TEXT NOT NULL DEFAULT '[]',
    writers TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS changes (
    rowid INTEGER PRIMARY KEY,
    doc INTEGER NOT NULL REFERENCES documents(rowid),
    hash BLOB NOT NULL,
    chunk BLOB NOT NULL,
    UNIQUE (doc, hash)
);
CREATE INDEX IF NOT EXISTS changes_by_doc ON changes (doc);
CREATE TABLE IF NOT EXISTS sync_states (
    doc INTEGER NOT NULL REFERENCES documents(rowid),
    storage_id TEXT NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (doc, storage_id)
);
CREATE TABLE IF NOT EXISTS tokens (
    hash BLOB PRIMARY KEY,
    did TEXT NOT NULL,
    expires REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tokens_by_did ON tokens (did);
CREATE INDEX IF NOT EXISTS tokens_by_expiry ON tokens (expires);
"""


TOKENS_SWEPT_PER_ADD = 4  # expired tokens (any DID) deleted with each new one
PROBE_TIMEOUT_MS = 100  # how long `check()` waits for another process's lock


class SqliteStorage:
    """Storage in one SQLite file. Thread-safe (one connection behind a lock).

    `busy_timeout`: seconds a statement waits for a lock held by another
    process before it fails with StorageUnavailable.
    """

    def __init__(self, path: Path | str, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._busy_timeout = busy_timeout
        self.health = StorageHealth("documents")
        self._stats = [0, 0, 0]
        try:
            self._db = private_sqlite_connect(
                self.path,
                timeout=busy_timeout,
                pragmas=("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"),
            )
        except sqlite3.DatabaseError as e:
            self._db = sqlite3.connect(":memory:", check_same_thread=False)  # never used
            self._broken(describe(e))
            return
        problem = quick_check(self._db)
        if problem is None:
            try:
                self._setup()
                return
            except sqlite3.DatabaseError as e:
                problem = describe(e)
        self._broken(problem)

    def _broken(self, problem: str) -> None:
        self.health.broken = (
            f"syncserver database unusable ({problem}); restore it from a backup and restart"
        )
        self.health.failed(self.health.broken)
        self._id = "unavailable-" + b58encode(os.urandom(8))

    def _setup(self) -> None:
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'storage_id'").fetchone()
        if row is None:
            self._id = b58encode(os.urandom(16))
            self._db.execute("INSERT INTO meta VALUES ('storage_id', ?)", (self._id,))
        else:
            self._id = str(row[0])
        docs = self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        changes, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(chunk)), 0) FROM changes"
        ).fetchone()
        self._stats = [int(docs), int(changes), int(size)]

    @contextlib.contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock; storage failures become StorageUnavailable."""
        with self.health.guard(), self._lock:
            yield self._db

    def check(self) -> None:
        """Raise StorageUnavailable unless the write lock can be taken now (waits briefly)."""
        with self._using() as db:
            db.execute(f"PRAGMA busy_timeout = {PROBE_TIMEOUT_MS}")
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("COMMIT")
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")

    def storage_id(self) -> str:
        return self._id

    def _doc_rowid(self, document_id: DocumentId) -> int | None:
        row = self._db.execute(
            "SELECT rowid FROM documents WHERE id = ?", (document_id,)
        ).fetchone()
        return None if row is None else int(row[0])

    def get_access(self, document_id: DocumentId) -> Access | None:
        with self._using() as db:
            row = db.execute(
                "SELECT owner, public, readers, writers FROM documents WHERE id = ?",
                (document_id,),
            ).fetchone()
        if row is None:
            return None
        owner, public, readers, writers = row
        return Access(
            Did(owner) if owner is not None else None,
            bool(public),
            frozenset(Did(d) for d in json.loads(readers)),
            frozenset(Did(d) for d in json.loads(writers)),
        )

    def set_access(self, document_id: DocumentId, access: Access) -> None:
        with self._using() as db:
            cur = db.execute(
                "UPDATE documents SET owner = ?, public = ?, readers = ?, writers = ? WHERE id = ?",
                (*_access_row(access), document_id),
            )
        if cur.rowcount == 0:
            raise StorageError(f"no document {document_id}")

    def commit(
        self,
        document_id: DocumentId,
        changes: Sequence[StoredChange],
        *,
        create: Access | None = None,
        sync_states: Mapping[str, bytes] | None = None,
    ) -> int:
        with self._using() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                created = False
                rowid = self._doc_rowid(document_id)
                if rowid is None:
                    if create is None:
                        raise StorageError(f"no document {document_id}")
                    cur = db.execute(
                        "INSERT INTO documents (id, owner, public, readers, writers)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (document_id, *_access_row(create)),
                    )
                    assert cur.lastrowid is not None
                    rowid = cur.lastrowid
                    created = True
                added = 0
                size = 0
                for change in changes:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO changes (doc, hash, chunk) VALUES (?, ?, ?)",
                        (rowid, change.hash, change.chunk),
                    )
                    if cur.rowcount:
                        added += 1
                        size += len(change.chunk)
                for storage_id, state in (sync_states or {}).items():
                    db.execute(
                        "INSERT OR REPLACE INTO sync_states VALUES (?, ?, ?)",
                        (rowid, storage_id, state),
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # the original error says more
                        db.execute("ROLLBACK")
                raise
            self._stats[0] += created
            self._stats[1] += added
            self._stats[2] += size
            return added

    def changes(self, document_id: DocumentId) -> Iterator[StoredChange]:
        with self._using() as db:
            rows = db.execute(
                "SELECT hash, chunk FROM changes WHERE doc ="
                " (SELECT rowid FROM documents WHERE id = ?) ORDER BY rowid",
                (document_id,),
            ).fetchall()
        return (StoredChange(ChangeHash(bytes(h)), bytes(c)) for h, c in rows)

    def load_sync_state(self, document_id: DocumentId, storage_id: str) -> bytes | None:
        with self._using() as db:
            row = db.execute(
                "SELECT state FROM sync_states WHERE storage_id = ? AND doc ="
                " (SELECT rowid FROM documents WHERE id = ?)",
                (storage_id, document_id),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def save_sync_state(self, document_id: DocumentId, storage_id: str, state: bytes) -> None:
        with self._using() as db:
            db.execute(
                "INSERT OR REPLACE INTO sync_states SELECT rowid, ?, ? FROM documents WHERE id = ?",
                (storage_id, state, document_id),
            )

    def add_token(
        self,
        token_hash: bytes,
        did: Did,
        expires_at: float,
        *,
        now: float = 0.0,
        keep: int | None = None,
    ) -> int:
        with self._using() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "DELETE FROM tokens WHERE did = ? AND (revoked != 0 OR expires <= ?)",
                    (did, now),
                )
                # A few expired tokens of anyone: each new token removes more than
                # it will leave, so identities that never return leave no trace.
                db.execute(
                    "DELETE FROM tokens WHERE rowid IN (SELECT rowid FROM tokens"
                    " WHERE expires <= ? ORDER BY expires LIMIT ?)",
                    (now, TOKENS_SWEPT_PER_ADD),
                )
                db.execute(
                    "INSERT OR REPLACE INTO tokens (hash, did, expires) VALUES (?, ?, ?)",
                    (token_hash, did, expires_at),
                )
                evicted = 0
                if keep is not None:
                    # Newest first by expiry, then by insertion; all past `keep` go.
                    evicted = db.execute(
                        "DELETE FROM tokens WHERE rowid IN (SELECT rowid FROM tokens"
                        " WHERE did = ? ORDER BY expires DESC, rowid DESC LIMIT -1 OFFSET ?)",
                        (did, max(keep, 1)),
                    ).rowcount
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # the original error says more
                        db.execute("ROLLBACK")
                raise
            return evicted

    def lookup_token(self, token_hash: bytes, now: float) -> Did | None:
        with self._using() as db:
            row = db.execute(
                "SELECT did FROM tokens WHERE hash = ? AND revoked = 0 AND expires > ?",
                (token_hash, now),
            ).fetchone()
        return None if row is None else Did(row[0])

    def revoke_token(self, token_hash: bytes) -> Did | None:
        with self._using() as db:
            row = db.execute(
                "UPDATE tokens SET revoked = 1 WHERE hash = ? RETURNING did", (token_hash,)
            ).fetchone()
        return None if row is None else Did(row[0])

    def revoke_tokens(self, did: Did) -> int:
        with self._using() as db:
            cur = db.execute("UPDATE tokens SET revoked = 1 WHERE did = ? AND revoked = 0", (did,))
        return cur.rowcount

    def stats(self) -> StorageStats:
        docs, changes, size = self._stats
        return StorageStats(docs, changes, size)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _access_row(access: Access) -> tuple[str | None, int, str, str]:
    return (
        access.owner,
        int(access.public),
        json.dumps(sorted(access.readers)),
        json.dumps(sorted(access.writers)),
    )
