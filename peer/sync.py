"""Automerge sync over peer links: one `SyncState` per (link, document).

    sync = DocumentSync(peer)              # takes over peer.on_message / on_link
    sync.add("doc1", Document())           # before or after listening
    sync.apply_local("doc1", change_chunks)
    await sync.wait_heads("doc1", heads)   # until our heads are those

When a link starts sharing a document, a fresh `SyncState` starts the Automerge
sync protocol with it; every received message is answered, and changes that
arrive from one link are offered to the others. A link that ends takes its
state with it: the next link to the same peer starts over, and Automerge's
protocol sends only what the other side lacks.

Backpressure: while a link's window is closed nothing is generated for it; once
it drains, one sync message per waiting document covers everything that
changed meanwhile (the sync state knows what was already sent), so a fast
local writer and a slow peer cost `window` bytes, not a growing queue.
"""

from __future__ import annotations

import asyncio
import logging

from hearth.types import ConnId, DocumentId
from peer.link import PeerLink
from peer.peer import Peer
from peer.transport import MessageTooLarge
from syncserver.automerge import AutomergeError, Document, SyncState

log = logging.getLogger("hearth.peer.sync")


class DocumentSync:
    """Keeps the documents added to it in sync with every linked peer."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.docs: dict[DocumentId, Document] = {}
        self.states: dict[tuple[ConnId, DocumentId], SyncState] = {}
        self.links: dict[ConnId, PeerLink] = {}
        self.messages_sent = 0
        self.messages_received = 0
        self.pushes_held = 0  # pushes deferred because a link's window was full
        self.changed = asyncio.Event()  # set whenever a document gains changes
        self._waiting: dict[ConnId, set[DocumentId]] = {}  # pushes held for a full window
        self._waiters: dict[ConnId, asyncio.Task[None]] = {}
        peer.on_message = self._on_message
        peer.on_link = self._on_link

    def add(self, doc_id: str, document: Document) -> None:
        """Sync `document` as `doc_id` (the caller listens to it through the peer)."""
        doc = DocumentId(doc_id)
        self.docs[doc] = document
        for (conn_id, d), _state in list(self.states.items()):
            if d == doc:
                self._push(conn_id, doc)

    def apply_local(self, doc_id: str, blob: bytes) -> list[bytes]:
        """Apply local change chunks and offer them to every linked peer."""
        doc = DocumentId(doc_id)
        added = self.docs[doc].apply(blob)
        if added:
            self.changed.set()
            self._push_all(doc)
        return added

    async def wait_heads(self, doc_id: str, heads: list[bytes]) -> None:
        """Wait until the document's heads equal `heads`."""
        doc = DocumentId(doc_id)
        want = sorted(heads)
        while self.docs[doc].heads != want:
            self.changed.clear()
            await self.changed.wait()

    async def wait_changes(self, doc_id: str, count: int) -> None:
        """Wait until the document holds at least `count` changes."""
        doc = DocumentId(doc_id)
        while len(self.docs[doc]) < count:
            self.changed.clear()
            await self.changed.wait()

    # ------------------------------------------------------------ peer callbacks

    def _on_link(self, link: PeerLink, doc: DocumentId, up: bool) -> None:
        key = (link.conn_id, doc)
        if up:
            self.links[link.conn_id] = link
            self.states[key] = SyncState()
            self._push(link.conn_id, doc)
        else:
            self.states.pop(key, None)
            held = self._waiting.get(link.conn_id)
            if held is not None:
                held.discard(doc)
            if not link.docs:
                self.links.pop(link.conn_id, None)
                self._waiting.pop(link.conn_id, None)
                waiter = self._waiters.pop(link.conn_id, None)
                if waiter is not None:
                    waiter.cancel()

    def _on_message(self, link: PeerLink, doc: DocumentId, data: bytes) -> None:
        document = self.docs.get(doc)
        state = self.states.get((link.conn_id, doc))
        if document is None or state is None:
            return
        self.messages_received += 1
        try:
            added = document.receive_sync_message(state, data)
        except AutomergeError as e:
            log.warning("bad sync message from %s for %s: %s", link.conn_id, doc, e)
            return
        self._push(link.conn_id, doc)
        if added:
            self.changed.set()
            for conn_id, d in list(self.states):
                if d == doc and conn_id != link.conn_id:
                    self._push(conn_id, doc)

    # ------------------------------------------------------------ sending

    def _push_all(self, doc: DocumentId) -> None:
        for conn_id, d in list(self.states):
            if d == doc:
                self._push(conn_id, doc)

    def _push(self, conn_id: ConnId, doc: DocumentId) -> None:
        document = self.docs.get(doc)
        state = self.states.get((conn_id, doc))
        if document is None or state is None:
            return
        link = self.links.get(conn_id)
        if link is not None and not link.window_open:
            self._hold(link, doc)
            return
        message = document.generate_sync_message(state)
        if message is not None:
            self.messages_sent += 1
            try:
                self.peer.send(conn_id, doc, message)
            except MessageTooLarge as e:
                log.error("cannot sync %s with %s: %s", doc, conn_id, e)

    def _hold(self, link: PeerLink, doc: DocumentId) -> None:
        """Push `doc` to `link` once its window has room again."""
        self.pushes_held += 1
        self._waiting.setdefault(link.conn_id, set()).add(doc)
        if link.conn_id in self._waiters:
            return

        async def wait() -> None:
            await link.drained()
            self._waiters.pop(link.conn_id, None)
            for held in sorted(self._waiting.pop(link.conn_id, ())):
                self._push(link.conn_id, held)

        self._waiters[link.conn_id] = asyncio.create_task(wait())
