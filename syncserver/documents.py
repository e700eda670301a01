"""Every document's sync sessions, run with I/O: the collection synchronizer.

`Documents` does what the decisions of `synchronizer.py` ask for, under each
document's lock: load the document and its rules (one trip to the storage
thread), admit, receive, store new changes durably, reply, gossip the sender's
new heads. It also remembers who waits for a document (`waiting.py`), applies
new access rules to live sessions (`access_changed`) and exports documents.
`SyncHub` (hub.py) owns the connections and calls it.

Invariants:
- Every message about a document is handled under that document's lock, and
  every sync message we generate is generated under it too, after the changes
  it may advertise have been committed. So no peer ever sees a head the store
  could lose.
- A document's `Document` and its connections' `SyncState`s are touched only
  under that lock, so no two threads ever work on one at once.
- The server announces nothing: it syncs a document only with connections that
  sent `sync` or `request` for it and may read it.

Memory bounds: requests for absent or unreadable documents, and sessions on
documents not stored yet, are remembered in two `WaitingRoom`s (per connection
and in total; when full, the one holding the most gives way). Each sync session
keeps its document loaded until it ends, so one connection may have at most
`max_sessions_per_connection` (a sync for one more is answered `error`; the
decision: `synchronizer.session_limit`). Loaded documents
beyond `max_cached_documents` are evicted least recently used among those not in
use (`cache.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypedDict, TypeVar

from hearth.types import DocumentId
from syncserver import synchronizer
from syncserver.access import AccessPolicy, AnyAuthor, Authorship, StoredAccess
from syncserver.automerge import (
    AutomergeError,
    Document,
    QueueLimits,
    SyncState,
)
from syncserver.automerge import SyncMessage as AutomergeSyncMessage
from syncserver.cache import DocEntry, DocumentCache
from syncserver.gossip import Gossip, Relay
from syncserver.messages import (
    DocUnavailableMessage,
    ErrorMessage,
    SyncMessage,
)
from syncserver.metrics import SyncMetrics
from syncserver.peers import Connection, Peer
from syncserver.storage import Access, Storage
from syncserver.synchronizer import Accept, Refuse, Unavailable
from syncserver.waiting import WaitingRoom

log = logging.getLogger("hearth.syncserver")

T = TypeVar("T")
Runner = Callable[[Callable[[], T]], Awaitable[T]]

# Sync messages up to this size are parsed and applied on the event loop (a few ms at
# most): a hop to a worker thread would cost more than it saves.
INLINE_MESSAGE_BYTES = 16 * 1024


async def _run_inline(fn: Callable[[], T]) -> T:
    return fn()


async def _run_in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


class DocumentOptions(TypedDict, total=False):
    """`Documents`' keyword options, which `SyncHub` passes through unchanged."""

    run: Runner[object] | None
    compute: Runner[object] | None
    max_cached_documents: int
    max_inflated: int | None
    max_queued_changes: int | None
    max_queued_bytes: int | None
    peer_queue_share: float
    max_pending_requests: int
    max_pending_requests_per_peer: int
    max_sessions_per_connection: int
    access_policy: AccessPolicy | None
    authorship: Authorship | None


class Documents:
    """Every document's sync sessions: rounds, commits, pending requests, access
    changes and export. Owns the document cache and the waiting rooms."""

    def __init__(
        self,
        storage: Storage,
        metrics: SyncMetrics,
        *,
        peer_id: str,
        run: Runner[object] | None = None,
        compute: Runner[object] | None = None,
        max_cached_documents: int = 1000,
        max_inflated: int | None = None,
        max_queued_changes: int | None = 1000,
        max_queued_bytes: int | None = 16 * 1024 * 1024,
        peer_queue_share: float = 0.25,
        max_pending_requests: int = 50_000,
        max_pending_requests_per_peer: int = 1024,
        max_sessions_per_connection: int = 1024,
        access_policy: AccessPolicy | None = None,
        authorship: Authorship | None = None,
    ) -> None:
        self.storage = storage
        self.metrics = metrics
        self.peer_id = peer_id
        self.storage_id = storage.storage_id()
        self._run: Runner[object] = run if run is not None else _run_inline
        self._compute_runner: Runner[object] = compute if compute is not None else _run_in_thread
        # Compressed changes in one sync message inflate to at most this (bytes).
        self._max_inflated = max_inflated
        # The one place that decides who may read and write a document and author
        # a change (syncserver/access.py): space authority plugs in here.
        self.access_policy: AccessPolicy = (
            access_policy if access_policy is not None else StoredAccess()
        )
        self.authorship: Authorship = authorship if authorship is not None else AnyAuthor()

        # Changes waiting for missing dependencies, per document (held in memory only),
        # and per (document, writer): each DID (all its connections together; an
        # anonymous peer alone) may fill at most `peer_queue_share` of a document's
        # queue, so one writer's orphans cannot block everyone else's.
        def share(limit: int | None) -> int | None:
            return None if limit is None else max(1, int(limit * peer_queue_share))

        self._queue_limits = QueueLimits(
            changes=max_queued_changes,
            bytes=max_queued_bytes,
            changes_per_source=share(max_queued_changes),
            bytes_per_source=share(max_queued_bytes),
        )
        self.cache = DocumentCache(
            max_cached_documents, self._new_document, self.metrics.loaded_documents.set
        )
        # Peers that asked and were told `doc-unavailable`: like the JS server, we
        # sync with them as soon as the document exists and they may read it.
        self.waiting: WaitingRoom[Connection] = WaitingRoom(
            max_pending_requests_per_peer, max_pending_requests
        )
        # Peers syncing a document that is not stored yet (they offered heads, so
        # they may be about to create it): each such session holds a cache entry,
        # so they are bounded like pending requests, and released once the
        # document is stored or the peer leaves.
        self.creating: WaitingRoom[Connection] = WaitingRoom(
            max_pending_requests_per_peer, max_pending_requests
        )
        # Sync sessions one connection may have open (each pins its document in the
        # cache until the connection leaves); 0: no cap.
        self.max_sessions_per_connection = max_sessions_per_connection
        self.gossip = Gossip(peer_id, self.storage_id)

    def _new_document(self) -> Document:
        return Document(limits=self._queue_limits)

    async def call(self, fn: Callable[[], T]) -> T:
        result = await self._run(fn)
        return result  # type: ignore[return-value]

    async def compute(self, fn: Callable[[], T], *, inline: bool = False) -> T:
        """Run CPU-heavy Automerge work off the event loop (unless `inline`: known to
        be small); call under the document's lock when `fn` touches its Document or a
        SyncState."""
        if inline:
            return fn()
        result = await self._compute_runner(fn)
        return result  # type: ignore[return-value]

    # -- sync rounds ------------------------------------------------------------

    def error(self, peer_id: str, peer: Peer, text: str, document_id: DocumentId | None) -> None:
        peer.send(ErrorMessage(self.peer_id, peer_id, text, document_id))

    async def _ensure_loaded(self, entry: DocEntry) -> None:
        """Load access rules and changes from storage; call under the entry's lock."""
        if entry.loaded:
            return
        document_id = entry.document_id

        def load() -> tuple[Access | None, Document | None]:
            # Rules and changes in one trip to the storage thread.
            access = self.storage.get_access(document_id)
            if access is None:
                return None, None
            chunks = (c.chunk for c in self.storage.changes(document_id))
            return access, Document.from_chunks(chunks, limits=self._queue_limits)

        access, doc = await self.call(load)
        if doc is not None:
            entry.doc = doc
        entry.access = access
        entry.loaded = True

    def _unavailable(
        self, conn: Connection, document_id: DocumentId, reason: str, *, wait: bool = True
    ) -> None:
        """Tell the peer we cannot give it the document; with `wait`, remember that it
        asked, so it gets the document if it appears or the peer is granted access."""
        self.metrics.refused.labels(reason).inc()
        conn.peer.send(DocUnavailableMessage(self.peer_id, conn.peer_id, document_id))
        if wait and not conn.closed:
            added, _taken = self.waiting.add(conn, document_id)
            if not added:
                # Answered all the same; only not remembered (see syncserver/waiting.py).
                self.metrics.refused.labels("pending_full").inc()

    async def _wake_waiting(self, entry: DocEntry) -> None:
        """Start syncing with waiting peers that may now read; call under the lock."""
        access = entry.access
        if access is None:
            return
        woken = []
        for conn in self.waiting.waiting_for(entry.document_id):
            if conn.closed:
                self.waiting.discard(conn, entry.document_id)
            elif self.access_policy.may_read(conn.did, entry.document_id, access):
                self.waiting.discard(conn, entry.document_id)
                if self._session_refused(conn, entry.document_id):
                    continue
                conn.sessions[entry.document_id] = SyncState()
                entry.connections[conn.peer_id] = conn
                woken.append(conn)
        await self._send_sync(entry, woken)

    def _session_refused(self, conn: Connection, document_id: DocumentId) -> bool:
        """If `conn` has no session on the document and may open no more, answer
        `error` naming the limit and return True."""
        if document_id in conn.sessions:
            return False
        refusal = synchronizer.session_limit(
            document_id, len(conn.sessions), self.max_sessions_per_connection
        )
        if refusal is None:
            return False
        self._refuse(conn, document_id, refusal)
        return True

    def _refuse(self, conn: Connection, document_id: DocumentId, refusal: Refuse) -> None:
        self.metrics.refused.labels(refusal.reason).inc()
        self.error(conn.peer_id, conn.peer, refusal.text, document_id)

    async def sync(self, conn: Connection, message: SyncMessage) -> None:
        """One sync round, under the document's lock (decisions: synchronizer.py)."""
        document_id = message.document_id
        self.metrics.sync_rounds.inc()
        # A new session beyond the connection's cap is refused before the document
        # is loaded (checked again below, once the session is about to open).
        if self._session_refused(conn, document_id):
            return
        entry = self.cache.entry(document_id)
        async with self.cache.locked(entry):
            if conn.closed:
                return
            await self._ensure_loaded(entry)
            access = entry.access
            data = message.data
            inline = len(data) <= INLINE_MESSAGE_BYTES
            parsed = None
            if synchronizer.needs_parse(document_id, conn.did, access, self.access_policy):
                try:
                    parsed = await self.compute(
                        lambda: AutomergeSyncMessage.decode(data), inline=inline
                    )
                except AutomergeError as e:
                    self._refuse(conn, document_id, synchronizer.malformed(e))
                    return
            admission = synchronizer.admit(
                document_id,
                conn.did,
                access,
                self.access_policy,
                is_request=message.is_request,
                parsed=parsed,
            )
            match admission:
                case Refuse():
                    self._refuse(conn, document_id, admission)
                    return
                case Unavailable(reason=reason, wait=wait, end_session=end_session):
                    if end_session:
                        self._drop_session(entry, conn)
                    self._unavailable(conn, document_id, reason, wait=wait)
                    return
                case Accept(creating=True):
                    if not self._room_to_create(conn, document_id):
                        return
            state = conn.sessions.get(document_id)
            if state is None:
                state = await self._initial_state(conn, document_id, access is not None)
                if conn.closed:
                    return
                # Other rounds of this connection may have opened sessions meanwhile.
                if self._session_refused(conn, document_id):
                    self.creating.discard(conn, document_id)
                    return
                conn.sessions[document_id] = state
            entry.connections[conn.peer_id] = conn
            self.waiting.discard(conn, document_id)
            before = state.their_heads
            doc, did, source = entry.doc, conn.did, conn.source
            max_inflated, authorship = self._max_inflated, self.authorship
            received = await self.compute(
                lambda: synchronizer.receive(
                    doc,
                    state,
                    data,
                    document_id=document_id,
                    did=did,
                    source=source,
                    authorship=authorship,
                    max_inflated=max_inflated,
                ),
                inline=inline,
            )
            if isinstance(received, Refuse):
                self._refuse(conn, document_id, received)
                return
            if received.queued:
                conn.queued_in.add(document_id)
            added = received.added
            if added:
                await self._commit(entry, conn, state, added)
                if conn.closed:
                    return
            others = [p for p in entry.connections.values() if p is not conn] if added else []
            await self._send_sync(entry, [conn, *others])
            if state.their_heads is not None and state.their_heads != before:
                now_ms = int(time.time() * 1000)
                self.relay(
                    self.gossip.heads_changed(
                        document_id, conn, state.their_heads, entry.connections, now_ms
                    )
                )

    async def _initial_state(
        self, conn: Connection, document_id: DocumentId, stored: bool
    ) -> SyncState:
        storage_id = conn.persistent_storage_id
        if not stored or storage_id is None:
            return SyncState()
        raw = await self.call(lambda: self.storage.load_sync_state(document_id, storage_id))
        return synchronizer.initial_state(raw)

    async def _commit(
        self, entry: DocEntry, conn: Connection, state: SyncState, added: list[bytes]
    ) -> None:
        """Store newly applied changes durably; on failure forget the in-memory copy."""
        changes = synchronizer.changes_to_store(entry.doc, added)
        create = None
        if entry.access is None:
            create = Access(owner=conn.did)
        storage_id = conn.persistent_storage_id
        sync_states = {storage_id: state.encode()} if storage_id else None
        document_id = entry.document_id
        try:
            await self.call(
                lambda: self.storage.commit(
                    document_id, changes, create=create, sync_states=sync_states
                )
            )
        except Exception:
            log.exception("commit failed for %s; dropping the in-memory copy", document_id)
            for other in list(entry.connections.values()):
                other.sessions.pop(document_id, None)
                self.error(other.peer_id, other.peer, "storage failure; retry later", document_id)
            entry.connections.clear()
            self._done_creating(document_id)
            self.cache.reset(entry)
            raise
        if create is not None:
            entry.access = create
            self._done_creating(document_id)
            await self._wake_waiting(entry)
        self.metrics.changes_received.inc(len(changes))

    async def _send_sync(self, entry: DocEntry, connections: list[Connection]) -> None:
        """Generate (on a worker) and send each peer's next sync message; call under
        the lock, after committing every change the messages may advertise."""
        targets = []
        for conn in connections:
            state = conn.sessions.get(entry.document_id)
            if state is not None and not conn.closed:
                targets.append((conn, state))
        if not targets:
            return
        doc, document_id = entry.doc, entry.document_id
        replies = await self.compute(
            lambda: synchronizer.replies(doc, document_id, self.peer_id, targets)
        )
        for conn, reply in replies:
            if not conn.closed:
                conn.peer.send(reply)

    def _room_to_create(self, conn: Connection, document_id: DocumentId) -> bool:
        """Count `conn`'s session on a document not stored yet (making room by
        dropping another's if needed); if there is no room, answer `error` and
        return False."""
        has_room, taken = self.creating.add(conn, document_id)
        if taken is not None:
            self._drop_creation(*taken)
        if not has_room:
            self.metrics.refused.labels("pending_full").inc()
            self.error(
                conn.peer_id,
                conn.peer,
                f"document {document_id}: too many documents not stored yet are"
                " being synced (on this connection or on the server); nothing"
                " stored, retry later",
                document_id,
            )
        return has_room

    def _drop_creation(self, conn: Connection, document_id: DocumentId) -> None:
        """Forget `peer`'s session on a document not stored yet, to make room for
        another peer's (it held the most). Not under that document's lock: a message
        of `peer` in work on it finds its session gone and sends no reply."""
        self.metrics.refused.labels("pending_full").inc()
        conn.sessions.pop(document_id, None)
        entry = self.cache.get(document_id)
        if entry is not None:
            if entry.connections.get(conn.peer_id) is conn:
                del entry.connections[conn.peer_id]
            self.cache.settle(entry)
        self.error(
            conn.peer_id,
            conn.peer,
            f"document {document_id}: dropped, too many documents not stored yet are being"
            " synced on the server; sync it again",
            document_id,
        )

    def _done_creating(self, document_id: DocumentId) -> None:
        for conn in self.creating.waiting_for(document_id):
            self.creating.discard(conn, document_id)

    def _drop_session(self, entry: DocEntry, conn: Connection) -> None:
        self.creating.discard(conn, entry.document_id)
        conn.sessions.pop(entry.document_id, None)
        if entry.connections.get(conn.peer_id) is conn:
            del entry.connections[conn.peer_id]

    def relay(self, relay: Relay) -> None:
        if relay.refused is not None:
            self.metrics.refused.labels(relay.refused).inc()
        for other, message in relay.sends:
            other.peer.send(message)

    async def access_changed(self, document_id: DocumentId, access: Access) -> None:
        """Apply new access rules to live sessions: peers that lost read access are told."""
        entry = self.cache.get(document_id)
        if entry is None:
            if not self.waiting.waiting_for(document_id):
                return
            entry = self.cache.entry(document_id)
        async with self.cache.locked(entry):
            if entry.loaded:
                entry.access = access
            self._end_unreadable(entry, access)
            if self.waiting.waiting_for(document_id):
                await self._ensure_loaded(entry)
                await self._wake_waiting(entry)

    async def recheck(self, document_id: DocumentId) -> None:
        """Ask the access policy again about every live session and waiting request on
        the document (its answer changed, e.g. a space's state): sessions of peers that
        may no longer read end (`doc-unavailable`), waiting peers that may now read
        start syncing."""
        entry = self.cache.get(document_id)
        if entry is None:
            if not self.waiting.waiting_for(document_id):
                return
            entry = self.cache.entry(document_id)
        async with self.cache.locked(entry):
            await self._ensure_loaded(entry)
            if entry.access is not None:
                self._end_unreadable(entry, entry.access)
                await self._wake_waiting(entry)

    def _end_unreadable(self, entry: DocEntry, access: Access) -> None:
        for conn in list(entry.connections.values()):
            if not self.access_policy.may_read(conn.did, entry.document_id, access):
                self._drop_session(entry, conn)
                self._unavailable(conn, entry.document_id, "access_revoked")

    async def export(self, document_id: DocumentId) -> bytes:
        """The stored document as one loadable blob (changes in causal order)."""

        def load() -> bytes:
            return b"".join(c.chunk for c in self.storage.changes(document_id))

        entry = self.cache.get(document_id)
        if entry is not None:
            async with self.cache.locked(entry):
                if entry.loaded:
                    doc = entry.doc
                    return await self.compute(doc.save)
        return await self.call(load)
