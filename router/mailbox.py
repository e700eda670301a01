"""Store-and-forward mailbox: the interface, its types, and the SQLite implementation.

A mail is kept until every device of the recipient that was known when it
was sent has acked it, or until its TTL passes. After the last ack its body
is dropped at once but a small tombstone stays until the TTL, so a resent
(sender, msgId) is recognised as a duplicate and not delivered twice.

Devices: a device is an opaque id the client chooses once per installation
(see docs/notifications.md) and presents on its router connection. A DID's
devices are those that ever presented themselves for it. A mail sent while
the recipient has no known device waits for an ack from *any* device (the
wildcard device `*`).

`ack` carries only a msgId, so it acknowledges every pending mail with that
msgId for the recipient; msgIds are meant to be random (ULIDs), so two
senders colliding is not a practical concern.

Quotas (all configuration, see docs/notifications.md): undelivered mails and
their body bytes per recipient, per sender, and per (sender, recipient) pair,
the pair's limits being a `share` of the recipient's, so one sender cannot
fill a recipient's whole mailbox and lock the recipient's friends out. Each
put counts the recipient's and the sender's undelivered mails on covering
indexes: at most `per_recipient + per_sender` index entries, no body read.

The SQLite implementation runs every statement on one thread and commits
writes in groups (one fsync for all operations queued meanwhile), in WAL
mode with `synchronous=FULL`: once `put` returns, the mail survives a crash.
Storage failures raise `hearth.storage.StorageUnavailable` and show in
`health` (see router/sqlite_thread.py); the file is 0600 and its integrity
is checked once at open.
"""

from __future__ import annotations

import asyncio
import enum
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from hearth.files import is_memory, quick_check
from hearth.storage import StorageHealth, describe
from hearth.types import Did
from router.sqlite_thread import (
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_PROBE_INTERVAL,
    SqliteThread,
    connect,
)
from router.urgency import MailUrgency

T = TypeVar("T")

ANY_DEVICE = "*"


@dataclass(frozen=True, slots=True)
class Mail:
    """One stored mail. Times are milliseconds since the epoch; `seq` orders retrieval."""

    sender: Did
    recipient: Did
    msg_id: str
    sent_at: int
    expires_at: int
    urgency: MailUrgency
    body: bytes
    seq: int = 0

    def ttl_left(self, now_ms: int) -> int:
        """Whole seconds until expiry (0 when expired)."""
        return max(0, (self.expires_at - now_ms) // 1000)


class PutResult(enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # still waiting for acks: do not deliver again
    ALREADY_DELIVERED = "already-delivered"  # every device acked it before


class MsgIdConflict(Exception):
    """The sender already used this msgId for another recipient."""


class QuotaExceeded(Exception):
    """A put refused because a quota is full.

    `kind` is "recipient", "sender" or "pair" (this sender's share of this
    recipient's mailbox); `unit` is "mails" or "bytes".
    """

    def __init__(self, kind: str, limit: int, unit: str = "mails") -> None:
        what = "sender and recipient" if kind == "pair" else kind
        super().__init__(f"mailbox quota per {what} ({limit} {unit}) is full")
        self.kind = kind
        self.limit = limit
        self.unit = unit


@dataclass(frozen=True, slots=True)
class Quotas:
    """Limits on undelivered mail; see docs/notifications.md for their costs."""

    per_recipient: int = 1000
    per_sender: int = 1000
    recipient_bytes: int = 16 * 1024 * 1024
    sender_bytes: int = 16 * 1024 * 1024
    share: float = 0.25  # of a recipient's mails and bytes one sender may hold

    @property
    def pair_mails(self) -> int:
        return max(1, int(self.per_recipient * self.share))

    @property
    def pair_bytes(self) -> int:
        return max(1, int(self.recipient_bytes * self.share))


class Mailbox(Protocol):
    """The storage interface. Every implementation passes tests/notify/mailbox_contract.py."""

    async def put(self, mail: Mail, devices: Iterable[str] | None = None) -> PutResult:
        """Store `mail` for `devices` (an empty set means: whichever device acks first).

        `devices=None` means the recipient's known devices (`add_device`) at
        this moment, read in the same transaction as the insert.

        Raises QuotaExceeded, or MsgIdConflict when the sender used `msg_id`
        for another recipient, or StorageUnavailable (nothing stored).
        Returns DUPLICATE / ALREADY_DELIVERED for a known (sender, msg_id)
        without changing anything.
        """
        ...

    async def pending(self, recipient: Did, device: str | None, limit: int = 1000) -> list[Mail]:
        """Unexpired mails this device has not acked, oldest first.

        `device=None` (a connection that has not said which device it is)
        sees only mails waiting for any device.
        """
        ...

    async def ack(self, recipient: Did, device: str | None, msg_id: str) -> list[Mail]:
        """Record the device's ack; return the mails that this ack completed (body empty)."""
        ...

    async def expire(self, now_ms: int) -> list[Mail]:
        """Delete everything past its TTL; return the mails that expired undelivered."""
        ...

    async def add_device(self, did: Did, device: str) -> None:
        """Remember that `device` belongs to `did` (idempotent)."""
        ...

    async def devices(self, did: Did) -> frozenset[str]: ...

    async def waiting_devices(self, mail: Mail) -> frozenset[str]:
        """Devices that have not acked this (sender, msg_id) yet."""
        ...

    async def count_pending(self) -> int: ...

    async def put_receipt(self, did: Did, msg_id: str, status: str, expires_at: int) -> None:
        """Keep a receipt for a sender that is offline, until `take_receipts` or expiry.

        At most `Quotas.per_sender` receipts are kept per DID; older ones make room.
        """
        ...

    async def take_receipts(self, did: Did) -> list[tuple[str, str]]:
        """Remove and return the DID's kept receipts as (msgId, status), oldest first."""
        ...

    @property
    def health(self) -> StorageHealth:
        """The store's state, for `/xrpc/_health`."""
        ...

    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS mail (
    seq INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    urgency TEXT NOT NULL,
    body BLOB NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    UNIQUE (sender, msg_id)
);
CREATE TABLE IF NOT EXISTS mail_device (
    seq INTEGER NOT NULL REFERENCES mail (seq) ON DELETE CASCADE,
    device TEXT NOT NULL,
    PRIMARY KEY (seq, device)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mail_device_device ON mail_device (device, seq);
CREATE TABLE IF NOT EXISTS receipt (
    id INTEGER PRIMARY KEY,
    did TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS receipt_did ON receipt (did, id);
CREATE INDEX IF NOT EXISTS receipt_expiry ON receipt (expires_at);
CREATE TABLE IF NOT EXISTS device (
    did TEXT NOT NULL,
    device TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (did, device)
) WITHOUT ROWID;
"""
# After the `size` column exists (files from before it get it added and filled).
_INDEXES = """
CREATE INDEX IF NOT EXISTS mail_recipient ON mail (recipient, done, seq);
CREATE INDEX IF NOT EXISTS mail_recipient_msg ON mail (recipient, msg_id);
DROP INDEX IF EXISTS mail_sender;
CREATE INDEX IF NOT EXISTS mail_recipient_usage ON mail (recipient, done, sender, size);
CREATE INDEX IF NOT EXISTS mail_sender_usage ON mail (sender, done, size);
CREATE INDEX IF NOT EXISTS mail_expiry ON mail (expires_at);
"""
# mail_device holds the devices that have NOT acked yet; an ack deletes its row.
# `size` is the body's length while undelivered (0 once done): what quotas count.

_COLUMNS = "sender, recipient, msg_id, sent_at, expires_at, urgency, body, seq"


def _row(r: tuple[Any, ...]) -> Mail:
    return Mail(Did(r[0]), Did(r[1]), r[2], r[3], r[4], MailUrgency(r[5]), bytes(r[6]), r[7])


class _SqliteCore:
    """The synchronous part: every method runs on the store's one thread, in a transaction."""

    def __init__(self, path: str, quotas: Quotas, busy_timeout: float) -> None:
        self.quotas = quotas
        # A corrupt file is reported (health, StorageUnavailable), not served.
        self.broken: str | None = None
        try:
            self.db = connect(path, busy_timeout)
        except sqlite3.DatabaseError as e:
            self.db = sqlite3.connect(":memory:", check_same_thread=False)  # never used
            self.broken = describe(e)
        if self.broken is None and not is_memory(path):
            self.broken = quick_check(self.db)
        if self.broken is None:
            try:
                self._schema()
            except sqlite3.DatabaseError as e:
                self.broken = f"cannot set up the schema: {describe(e)}"
        if self.broken is not None:
            self.broken = f"mailbox database unusable ({self.broken}); restore or remove it"

    def _schema(self) -> None:
        db = self.db
        db.executescript(_SCHEMA)
        columns = {r[1] for r in db.execute("PRAGMA table_info(mail)")}
        if "size" not in columns:
            db.executescript(
                "BEGIN; ALTER TABLE mail ADD COLUMN size INTEGER NOT NULL DEFAULT 0;"
                " UPDATE mail SET size = length(body) WHERE done = 0; COMMIT;"
            )
        db.executescript(_INDEXES)

    def put(self, mail: Mail, devices: frozenset[str] | None) -> PutResult:
        db = self.db
        if devices is None:
            devices = self.devices(mail.recipient)
        found = db.execute(
            "SELECT done, recipient FROM mail WHERE sender = ? AND msg_id = ?",
            (mail.sender, mail.msg_id),
        ).fetchone()
        if found is not None:
            if found[1] != mail.recipient:
                raise MsgIdConflict("msgId already used for another recipient")
            return PutResult.ALREADY_DELIVERED if found[0] else PutResult.DUPLICATE
        self._check_quotas(mail)
        cur = db.execute(
            "INSERT INTO mail (sender, msg_id, recipient, sent_at, expires_at, urgency, body, size)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                mail.sender,
                mail.msg_id,
                mail.recipient,
                mail.sent_at,
                mail.expires_at,
                mail.urgency.value,
                mail.body,
                len(mail.body),
            ),
        )
        seq = cur.lastrowid
        db.executemany(
            "INSERT INTO mail_device (seq, device) VALUES (?, ?)",
            [(seq, d) for d in (devices or {ANY_DEVICE})],
        )
        return PutResult.STORED

    def _check_quotas(self, mail: Mail) -> None:
        """Raise QuotaExceeded if storing `mail` would pass a limit."""
        q = self.quotas
        size = len(mail.body)
        r_mails, r_bytes, p_mails, p_bytes = self.db.execute(
            "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(sender = ?), 0),"
            " coalesce(sum(CASE WHEN sender = ? THEN size ELSE 0 END), 0)"
            " FROM mail WHERE recipient = ? AND done = 0",
            (mail.sender, mail.sender, mail.recipient),
        ).fetchone()
        s_mails, s_bytes = self.db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM mail WHERE sender = ? AND done = 0",
            (mail.sender,),
        ).fetchone()
        checks = (
            ("recipient", r_mails + 1, q.per_recipient, "mails"),
            ("recipient", r_bytes + size, q.recipient_bytes, "bytes"),
            ("sender", s_mails + 1, q.per_sender, "mails"),
            ("sender", s_bytes + size, q.sender_bytes, "bytes"),
            ("pair", p_mails + 1, q.pair_mails, "mails"),
            ("pair", p_bytes + size, q.pair_bytes, "bytes"),
        )
        for kind, wanted, limit, unit in checks:
            if wanted > limit:
                raise QuotaExceeded(kind, limit, unit)

    def pending(self, recipient: str, device: str | None, limit: int, now: int) -> list[Mail]:
        wanted = (ANY_DEVICE,) if device is None else (device, ANY_DEVICE)
        marks = ",".join("?" * len(wanted))
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM mail WHERE recipient = ? AND done = 0 AND expires_at > ?"
            f" AND EXISTS (SELECT 1 FROM mail_device md WHERE md.seq = mail.seq"
            f" AND md.device IN ({marks})) ORDER BY seq LIMIT ?",
            (recipient, now, *wanted, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    def ack(self, recipient: str, device: str | None, msg_id: str) -> list[Mail]:
        db = self.db
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM mail WHERE recipient = ? AND msg_id = ? AND done = 0",
            (recipient, msg_id),
        ).fetchall()
        completed: list[Mail] = []
        for r in rows:
            mail = _row(r)
            wanted = (ANY_DEVICE,) if device is None else (device, ANY_DEVICE)
            db.executemany(
                "DELETE FROM mail_device WHERE seq = ? AND device = ?",
                [(mail.seq, d) for d in wanted],
            )
            left = db.execute("SELECT 1 FROM mail_device WHERE seq = ? LIMIT 1", (mail.seq,))
            if left.fetchone() is None:
                db.execute(
                    "UPDATE mail SET done = 1, body = x'', size = 0 WHERE seq = ?", (mail.seq,)
                )
                completed.append(replace(mail, body=b""))
        return completed

    def expire(self, now: int) -> list[Mail]:
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM mail WHERE expires_at <= ? AND done = 0", (now,)
        ).fetchall()
        self.db.execute("DELETE FROM mail WHERE expires_at <= ?", (now,))
        self.db.execute("DELETE FROM receipt WHERE expires_at <= ?", (now,))
        return [replace(_row(r), body=b"") for r in rows]

    def add_device(self, did: str, device: str, now: int) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO device (did, device, added_at) VALUES (?, ?, ?)",
            (did, device, now),
        )

    def devices(self, did: str) -> frozenset[str]:
        rows = self.db.execute("SELECT device FROM device WHERE did = ?", (did,)).fetchall()
        return frozenset(r[0] for r in rows)

    def waiting_devices(self, sender: str, msg_id: str) -> frozenset[str]:
        rows = self.db.execute(
            "SELECT md.device FROM mail m JOIN mail_device md ON md.seq = m.seq"
            " WHERE m.sender = ? AND m.msg_id = ?",
            (sender, msg_id),
        ).fetchall()
        return frozenset(r[0] for r in rows)

    def put_receipt(self, did: str, msg_id: str, status: str, expires_at: int) -> None:
        # At most `per_sender` kept receipts per DID: the oldest make room.
        self.db.execute(
            "DELETE FROM receipt WHERE id IN (SELECT id FROM receipt WHERE did = ?"
            " ORDER BY id DESC LIMIT -1 OFFSET ?)",
            (did, self.quotas.per_sender - 1),
        )
        self.db.execute(
            "INSERT INTO receipt (did, msg_id, status, expires_at) VALUES (?, ?, ?, ?)",
            (did, msg_id, status, expires_at),
        )

    def take_receipts(self, did: str, now: int) -> list[tuple[str, str]]:
        rows = self.db.execute(
            "SELECT msg_id, status FROM receipt WHERE did = ? AND expires_at > ? ORDER BY id",
            (did, now),
        ).fetchall()
        self.db.execute("DELETE FROM receipt WHERE did = ?", (did,))
        return [(r[0], r[1]) for r in rows]

    def count_pending(self) -> int:
        (n,) = self.db.execute("SELECT count(*) FROM mail WHERE done = 0").fetchone()
        return int(n)


class SqliteMailbox:
    """`Mailbox` in one SQLite file. Create with `await SqliteMailbox.open(path)`."""

    def __init__(
        self,
        core: _SqliteCore,
        clock: Callable[[], float],
        retry_interval: float = 1.0,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
    ) -> None:
        self._core = core
        self._clock = clock
        self._thread = SqliteThread(
            core.db,
            "mailbox",
            broken=core.broken,
            retry_interval=retry_interval,
            probe_interval=probe_interval,
        )

    @classmethod
    async def open(
        cls,
        path: Path | str,
        quotas: Quotas | None = None,
        clock: Callable[[], float] = time.time,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        retry_interval: float = 1.0,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
    ) -> SqliteMailbox:
        """Open (creating if needed, mode 0600) the mailbox at `path` (":memory:": throwaway).

        A file that fails its integrity check opens anyway, refusing every
        call with StorageUnavailable and saying why in `health`.
        `probe_interval`: see `SqliteThread`.
        """
        core = await asyncio.to_thread(_SqliteCore, str(path), quotas or Quotas(), busy_timeout)
        return cls(core, clock, retry_interval, probe_interval)

    @property
    def health(self) -> StorageHealth:
        return self._thread.health

    def _now(self) -> int:
        return int(self._clock() * 1000)

    async def _call(self, fn: Callable[[], T]) -> T:
        return await self._thread.call(fn)

    async def put(self, mail: Mail, devices: Iterable[str] | None = None) -> PutResult:
        devs = None if devices is None else frozenset(devices)
        return await self._call(lambda: self._core.put(mail, devs))

    async def pending(self, recipient: Did, device: str | None, limit: int = 1000) -> list[Mail]:
        now = self._now()
        return await self._call(lambda: self._core.pending(recipient, device, limit, now))

    async def ack(self, recipient: Did, device: str | None, msg_id: str) -> list[Mail]:
        return await self._call(lambda: self._core.ack(recipient, device, msg_id))

    async def expire(self, now_ms: int) -> list[Mail]:
        return await self._call(lambda: self._core.expire(now_ms))

    async def add_device(self, did: Did, device: str) -> None:
        now = self._now()
        await self._call(lambda: self._core.add_device(did, device, now))

    async def devices(self, did: Did) -> frozenset[str]:
        return await self._call(lambda: self._core.devices(did))

    async def waiting_devices(self, mail: Mail) -> frozenset[str]:
        return await self._call(lambda: self._core.waiting_devices(mail.sender, mail.msg_id))

    async def count_pending(self) -> int:
        return await self._call(self._core.count_pending)

    async def put_receipt(self, did: Did, msg_id: str, status: str, expires_at: int) -> None:
        await self._call(lambda: self._core.put_receipt(did, msg_id, status, expires_at))

    async def take_receipts(self, did: Did) -> list[tuple[str, str]]:
        now = self._now()
        return await self._call(lambda: self._core.take_receipts(did, now))

    async def close(self) -> None:
        await self._thread.close()
