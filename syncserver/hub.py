"""The syncserver's protocol logic wired together: `SyncHub`, the facade the
transport and the XRPC routes call.

No sockets here. A transport hands each connection's decoded messages to
`SyncHub` and gives it a `Peer` to send through (`send` must not block: it
queues); the hub keeps a `Connection` (the client's state) per joined socket.
The parts, each one concept without I/O (docs/syncserver.md "Architecture"):

- `peers.py`: `Peer`, `Connection`, the join/reconnect rules and the
  per-message dispatch rule the transport follows;
- `documents.py`: every document's sync sessions, run with I/O (`Documents`);
- `cache.py`: loaded documents, their locks and eviction;
- `synchronizer.py`: a sync round's decisions (admit, receive, replies);
- `access.py`: who may read, write and author a change (the plug-in points for
  space authority);
- `gossip.py`: ephemeral relay and remote heads;
- `waiting.py`: pending requests and sessions on documents not stored yet.

The hub owns the joined connections and dispatches their messages: sync
messages to `Documents` (documents.py, which runs each round under the
document's lock and does the I/O its decisions ask for), ephemeral messages
and remote heads to `Gossip`. Storage calls go through the `run` callable given
at construction, which in the server runs them on a worker thread; CPU-heavy
Automerge work goes through `compute`, by default a worker thread too, so one
big upload does not stall every other peer's messages on the event loop.
"""

from __future__ import annotations

import logging
from typing import Unpack

from hearth.types import Did, DocumentId
from syncserver.documents import DocumentOptions, Documents
from syncserver.messages import (
    PROTOCOL_VERSION,
    DocUnavailableMessage,
    EphemeralMessage,
    ErrorMessage,
    JoinMessage,
    Message,
    PeerMessage,
    PeerMetadata,
    RemoteHeadsChanged,
    RemoteSubscriptionChange,
    SyncMessage,
)
from syncserver.metrics import SyncMetrics
from syncserver.peers import Connection, ConnectionTable, Peer
from syncserver.storage import Access, Storage

log = logging.getLogger("hearth.syncserver")


class SyncHub:
    """The syncserver's peer: connections in, documents synced. Options are those
    of `Documents`; `access_policy` and `authorship` are the plug-in points of
    `syncserver/access.py`."""

    def __init__(
        self,
        storage: Storage,
        metrics: SyncMetrics,
        *,
        peer_id: str,
        **options: Unpack[DocumentOptions],
    ) -> None:
        self.documents = Documents(storage, metrics, peer_id=peer_id, **options)
        self.storage = storage
        self.metrics = metrics
        self.peer_id = peer_id
        self.storage_id = self.documents.storage_id
        self.access_policy = self.documents.access_policy
        self.cache = self.documents.cache
        self.waiting = self.documents.waiting
        self.creating = self.documents.creating
        self.gossip = self.documents.gossip
        self.table = ConnectionTable()
        # Joined connections by peerId (the table's; read-only outside the hub).
        self.connections: dict[str, Connection] = self.table.by_peer_id

    # -- connections -----------------------------------------------------------

    async def join(self, peer: Peer, message: JoinMessage, did: Did | None) -> Connection | None:
        """Handle a `join` from `peer`: answer `peer` and return the new Connection,
        or answer `error` and close it (the rules: `syncserver/peers.py`).

        A join of a peerId already connected as the same DID closes and replaces the
        old connection."""
        refused = self.table.refuse_join(message, did)
        if refused is not None:
            if refused.metric is not None:
                self.metrics.refused.labels(refused.metric).inc()
            peer.send(ErrorMessage(self.peer_id, message.sender_id, refused.text))
            peer.close(refused.code, refused.close_reason)
            return None
        old = self.table.replaced(message)
        if old is not None:
            await self.leave(old)
            old.peer.close(1000, "replaced by a newer connection of the same peer")
        conn = Connection(message.sender_id, did, message.peer_metadata, peer)
        self.table.add(conn)
        self.metrics.peers.set(len(self.connections))
        peer.send(
            PeerMessage(
                self.peer_id,
                conn.peer_id,
                PeerMetadata(self.storage_id, is_ephemeral=False),
                PROTOCOL_VERSION,
            )
        )
        return conn

    async def leave(self, conn: Connection) -> None:
        """Forget a peer (its socket closed or was replaced); persist its sync states."""
        if conn.closed:
            return
        self.table.remove(conn)
        self.metrics.peers.set(len(self.connections))
        states: list[tuple[DocumentId, bytes]] = []
        self.waiting.drop_peer(conn)
        self.creating.drop_peer(conn)
        # Its sessions and orphans are touched under each document's lock: a message
        # of this peer may still be in work on a thread (a re-join replaced it).
        for document_id in list(dict.fromkeys([*conn.sessions, *conn.queued_in])):
            entry = self.cache.get(document_id)
            if entry is None:
                # Not cached, so nothing is working on it.
                state = conn.sessions.pop(document_id, None)
                if state is not None and conn.persistent_storage_id and state.shared_heads:
                    states.append((document_id, state.encode()))
                continue
            async with self.cache.locked(entry):
                if entry.connections.get(conn.peer_id) is conn:
                    del entry.connections[conn.peer_id]
                state = conn.sessions.pop(document_id, None)
                if state is not None and conn.persistent_storage_id and state.shared_heads:
                    states.append((document_id, state.encode()))
                # Its orphans (changes waiting for missing deps) go with the last
                # connection of its DID, unless another connected peer sent them too:
                # nobody else may ever send what they wait for, and the client
                # re-sends them on its next sync (its new sync state starts afresh).
                if document_id in conn.queued_in:
                    # Another connection of the same writer takes them over, if any.
                    heir = self.table.heir(conn.source)
                    if heir is not None:
                        heir.queued_in.add(document_id)
                    else:
                        entry.doc.drop_source(conn.source)
        conn.sessions.clear()
        conn.queued_in.clear()
        storage_id = conn.persistent_storage_id
        if storage_id and states:

            def save() -> None:
                for document_id, encoded in states:
                    self.storage.save_sync_state(document_id, storage_id, encoded)

            try:
                await self.documents.call(save)
            except Exception:
                log.exception("could not persist sync states of a leaving peer")
        self.cache.evict()

    # -- messages --------------------------------------------------------------

    async def handle(self, conn: Connection, message: Message) -> None:
        """Handle one message from a joined peer."""
        if conn.closed:
            return
        relay = self.documents.relay
        match message:
            case SyncMessage():
                await self.documents.sync(conn, message)
            case EphemeralMessage():
                relay(self.gossip.ephemeral(conn, message, self._syncing(message)))
            case RemoteSubscriptionChange():
                self.gossip.subscription_change(conn, message)
            case RemoteHeadsChanged():
                self.documents.relay(
                    self.gossip.remote_heads(conn, message, self._syncing(message))
                )
            case DocUnavailableMessage():
                # The peer does not have a document we never offered; nothing to do.
                pass
            case _:
                pass

    def _syncing(
        self, message: EphemeralMessage | RemoteHeadsChanged
    ) -> dict[str, Connection] | None:
        """The connections syncing the message's document, if it is cached."""
        entry = self.cache.get(message.document_id)
        return None if entry is None else entry.connections

    # -- access changes --------------------------------------------------------

    async def access_changed(self, document_id: DocumentId, access: Access) -> None:
        """Apply new access rules to live sessions: peers that lost read access are told."""
        await self.documents.access_changed(document_id, access)

    async def recheck(self, document_id: DocumentId) -> None:
        """The access policy's answers about the document changed (a space's state):
        end the sessions of peers that may no longer read it, start waiting ones."""
        await self.documents.recheck(document_id)

    async def export(self, document_id: DocumentId) -> bytes:
        """The stored document as one loadable blob (changes in causal order)."""
        return await self.documents.export(document_id)

    def close_peers_of(self, did: Did, reason: str) -> int:
        """Close every connection authenticated as `did` (e.g. its tokens were revoked)."""
        count = 0
        for conn in self.table.of_did(did):
            conn.peer.close(4001, reason)
            count += 1
        return count
