"""Push registrations and document subscriptions: the interface and SQLite implementation.

A registration ties one (DID, device) to a browser PushSubscription and a
level. A device may register for several DIDs and a DID may have several
devices. A device may also subscribe, for one of its DIDs, to documents
(a channel, a thread) with a level of their own; `notify` frames fan out to
those subscriptions.

Endpoint URLs and keys are stored as given (the router needs them to push);
they are never returned to anyone but the registering DID, and never logged.
The file (it holds every endpoint's auth secret) is 0600. Storage failures
raise `hearth.storage.StorageUnavailable` and show in `health`; a file that
fails its integrity check at open is refused, not served.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hearth.files import is_memory, quick_check
from hearth.storage import StorageHealth, describe
from hearth.types import Did, DocumentId
from router.push import PushSubscription
from router.sqlite_thread import (
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_PROBE_INTERVAL,
    SqliteThread,
    connect,
)
from router.urgency import Level


class RegistryFull(Exception):
    """A registration or document subscription refused by a quota."""


@dataclass(frozen=True, slots=True)
class Registration:
    did: Did
    device: str
    subscription: PushSubscription
    level: Level


@dataclass(frozen=True, slots=True)
class RegistryLimits:
    devices_per_did: int = 32
    docs_per_device: int = 1000


class PushRegistry(Protocol):
    """Every implementation passes tests/notify/test_push_store.py's contract."""

    async def register(
        self, did: Did, device: str, subscription: PushSubscription, level: Level
    ) -> None:
        """Create or replace the (did, device) registration. Raises RegistryFull."""
        ...

    async def unregister(self, did: Did, device: str) -> bool:
        """Remove it and its document subscriptions; False if there was none."""
        ...

    async def set_level(self, did: Did, device: str | None, level: Level) -> int:
        """Change the level of one device (or of all the DID's devices); returns how many."""
        ...

    async def registrations(self, did: Did) -> list[Registration]: ...

    async def remove_endpoint(self, endpoint: str) -> int:
        """Forget every registration using `endpoint` (the push service said 404/410)."""
        ...

    async def subscribe_doc(self, did: Did, device: str, doc: DocumentId, level: Level) -> None:
        """Subscribe a registered device to a document. KeyError if not registered."""
        ...

    async def unsubscribe_doc(self, did: Did, device: str, doc: DocumentId) -> bool: ...

    async def doc_subscribers(self, doc: DocumentId) -> list[Registration]:
        """Registrations subscribed to `doc`, each with the subscription's level."""
        ...

    @property
    def health(self) -> StorageHealth:
        """The store's state, for `/xrpc/_health`."""
        ...

    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS registration (
    did TEXT NOT NULL,
    device TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    p256dh TEXT NOT NULL,
    auth TEXT NOT NULL,
    level TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (did, device)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS registration_endpoint ON registration (endpoint);
CREATE TABLE IF NOT EXISTS doc_subscription (
    doc TEXT NOT NULL,
    did TEXT NOT NULL,
    device TEXT NOT NULL,
    level TEXT NOT NULL,
    PRIMARY KEY (doc, did, device),
    FOREIGN KEY (did, device) REFERENCES registration (did, device) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS doc_subscription_device ON doc_subscription (did, device);
"""

_REG = "r.did, r.device, r.endpoint, r.p256dh, r.auth"


def _reg(row: tuple[str, ...], level: str) -> Registration:
    return Registration(Did(row[0]), row[1], PushSubscription(row[2], row[3], row[4]), Level(level))


class SqlitePushRegistry:
    """`PushRegistry` in one SQLite file. Create with `await SqlitePushRegistry.open(path)`."""

    def __init__(self, thread: SqliteThread, limits: RegistryLimits, clock: Callable[[], float]):
        self._thread = thread
        self._db = thread.db
        self._limits = limits
        self._clock = clock

    @classmethod
    async def open(
        cls,
        path: Path | str,
        limits: RegistryLimits | None = None,
        clock: Callable[[], float] = time.time,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        retry_interval: float = 1.0,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
    ) -> SqlitePushRegistry:
        """Open (creating if needed, mode 0600) the registry at `path`.
        `probe_interval`: see `SqliteThread`."""

        def setup() -> SqliteThread:
            broken: str | None = None
            try:
                db = connect(str(path), busy_timeout)
            except sqlite3.DatabaseError as e:
                db = sqlite3.connect(":memory:", check_same_thread=False)  # never used
                broken = describe(e)
            if broken is None and not is_memory(path):
                broken = quick_check(db)
            if broken is None:
                try:
                    db.executescript(_SCHEMA)
                except sqlite3.DatabaseError as e:
                    broken = f"cannot set up the schema: {describe(e)}"
            if broken is not None:
                broken = f"push registry database unusable ({broken}); restore or remove it"
            return SqliteThread(
                db,
                "push-registry",
                broken=broken,
                retry_interval=retry_interval,
                probe_interval=probe_interval,
            )

        thread = await asyncio.to_thread(setup)
        return cls(thread, limits or RegistryLimits(), clock)

    @property
    def health(self) -> StorageHealth:
        return self._thread.health

    async def register(
        self, did: Did, device: str, subscription: PushSubscription, level: Level
    ) -> None:
        now = int(self._clock())

        def run() -> None:
            db = self._db
            exists = db.execute(
                "SELECT 1 FROM registration WHERE did = ? AND device = ?", (did, device)
            ).fetchone()
            if exists is None:
                (n,) = db.execute(
                    "SELECT count(*) FROM registration WHERE did = ?", (did,)
                ).fetchone()
                if n >= self._limits.devices_per_did:
                    raise RegistryFull(f"at most {self._limits.devices_per_did} devices per DID")
                db.execute(
                    "INSERT INTO registration VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (did, device, subscription.endpoint, subscription.p256dh,
                     subscription.auth, level.value, now),
                )  # fmt: skip
            else:
                db.execute(
                    "UPDATE registration SET endpoint = ?, p256dh = ?, auth = ?, level = ?,"
                    " updated_at = ? WHERE did = ? AND device = ?",
                    (subscription.endpoint, subscription.p256dh, subscription.auth,
                     level.value, now, did, device),
                )  # fmt: skip

        await self._thread.call(run)

    async def unregister(self, did: Did, device: str) -> bool:
        def run() -> bool:
            cur = self._db.execute(
                "DELETE FROM registration WHERE did = ? AND device = ?", (did, device)
            )
            return cur.rowcount > 0

        return await self._thread.call(run)

    async def set_level(self, did: Did, device: str | None, level: Level) -> int:
        def run() -> int:
            if device is None:
                cur = self._db.execute(
                    "UPDATE registration SET level = ? WHERE did = ?", (level.value, did)
                )
            else:
                cur = self._db.execute(
                    "UPDATE registration SET level = ? WHERE did = ? AND device = ?",
                    (level.value, did, device),
                )
            return cur.rowcount

        return await self._thread.call(run)

    async def registrations(self, did: Did) -> list[Registration]:
        def run() -> list[Registration]:
            rows = self._db.execute(
                f"SELECT {_REG}, r.level FROM registration r WHERE r.did = ? ORDER BY r.device",
                (did,),
            ).fetchall()
            return [_reg(r[:5], r[5]) for r in rows]

        return await self._thread.call(run)

    async def remove_endpoint(self, endpoint: str) -> int:
        def run() -> int:
            cur = self._db.execute("DELETE FROM registration WHERE endpoint = ?", (endpoint,))
            return cur.rowcount

        return await self._thread.call(run)

    async def subscribe_doc(self, did: Did, device: str, doc: DocumentId, level: Level) -> None:
        def run() -> None:
            db = self._db
            if (
                db.execute(
                    "SELECT 1 FROM registration WHERE did = ? AND device = ?", (did, device)
                ).fetchone()
                is None
            ):
                raise KeyError("device not registered for push")
            known = db.execute(
                "SELECT 1 FROM doc_subscription WHERE doc = ? AND did = ? AND device = ?",
                (doc, did, device),
            ).fetchone()
            if known is None:
                (n,) = db.execute(
                    "SELECT count(*) FROM doc_subscription WHERE did = ? AND device = ?",
                    (did, device),
                ).fetchone()
                if n >= self._limits.docs_per_device:
                    raise RegistryFull(
                        f"at most {self._limits.docs_per_device} document subscriptions"
                    )
            db.execute(
                "INSERT OR REPLACE INTO doc_subscription VALUES (?, ?, ?, ?)",
                (doc, did, device, level.value),
            )

        await self._thread.call(run)

    async def unsubscribe_doc(self, did: Did, device: str, doc: DocumentId) -> bool:
        def run() -> bool:
            cur = self._db.execute(
                "DELETE FROM doc_subscription WHERE doc = ? AND did = ? AND device = ?",
                (doc, did, device),
            )
            return cur.rowcount > 0

        return await self._thread.call(run)

    async def doc_subscribers(self, doc: DocumentId) -> list[Registration]:
        def run() -> list[Registration]:
            rows = self._db.execute(
                f"SELECT {_REG}, s.level FROM doc_subscription s JOIN registration r"
                " ON r.did = s.did AND r.device = s.device WHERE s.doc = ?"
                " ORDER BY r.did, r.device",
                (doc,),
            ).fetchall()
            return [_reg(r[:5], r[5]) for r in rows]

        return await self._thread.call(run)

    async def close(self) -> None:
        await self._thread.close()
