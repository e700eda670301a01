"""Gossip: ephemeral messages and remote heads, relayed among a document's peers.

No I/O. Each decision takes the message and the connections syncing the document
(`DocEntry.connections`) and returns a `Relay`: the messages to send, to whom, and the
reason to count if part of the input was refused. The caller sends them (in
order) and counts the refusal; it must pass only connections that may read the
document, which a session on it implies.

- **Ephemeral** messages (presence, cursors) go to every other connection syncing
  the document, once: a (sender, session, count) seen among the last
  `EPHEMERAL_MEMORY` is a duplicate. Only a connection syncing the document may
  talk in it.
- **Remote heads**: a connection subscribes to storage ids (at most
  `MAX_SUBSCRIPTIONS`); when a peer's heads change (from its sync messages, or
  from a `remote-heads-changed` it relays about third parties), the document's
  connections subscribed to that storage id are told. Claims about storage we
  know firsthand are dropped.

Cost: `EPHEMERAL_MEMORY` keys (~100 bytes each) for the whole server, and up to
`MAX_SUBSCRIPTIONS` storage ids per connection.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from hearth.base58 import b58check_encode
from hearth.types import DocumentId
from syncserver.messages import (
    EphemeralMessage,
    Message,
    RemoteHeads,
    RemoteHeadsChanged,
    RemoteSubscriptionChange,
)
from syncserver.peers import Connection

MAX_SUBSCRIPTIONS = 256
EPHEMERAL_MEMORY = 10_000


@dataclass
class Relay:
    """What a gossip decision asks for: `sends` in order, and `refused`, a metrics
    reason, if (part of) the input was dropped."""

    sends: list[tuple[Connection, Message]] = field(default_factory=list)
    refused: str | None = None


class Gossip:
    """Relays ephemeral messages and remote heads for the server `peer_id` whose
    own storage is `storage_id`."""

    def __init__(self, peer_id: str, storage_id: str) -> None:
        self.peer_id = peer_id
        self.storage_id = storage_id
        self._ephemeral_seen: OrderedDict[tuple[str, str, int], None] = OrderedDict()

    def ephemeral(
        self, conn: Connection, message: EphemeralMessage, syncing: Mapping[str, Connection] | None
    ) -> Relay:
        """Relay `peer`'s ephemeral message to the others in `syncing` (the
        document's connections; None if it is not cached)."""
        key = (message.sender_id, message.session_id, message.count)
        if key in self._ephemeral_seen:
            return Relay(refused="ephemeral_duplicate")
        self._ephemeral_seen[key] = None
        while len(self._ephemeral_seen) > EPHEMERAL_MEMORY:
            self._ephemeral_seen.popitem(last=False)
        if syncing is None or syncing.get(conn.peer_id) is not conn:
            # Only peers syncing the document (and so allowed to read it) may talk in it.
            return Relay(refused="ephemeral_no_session")
        relay = Relay()
        for other in list(syncing.values()):
            if other is conn or other.closed:
                continue
            relay.sends.append(
                (
                    other,
                    EphemeralMessage(
                        message.sender_id,
                        other.peer_id,
                        message.document_id,
                        message.session_id,
                        message.count,
                        message.data,
                    ),
                )
            )
        return relay

    @staticmethod
    def subscription_change(conn: Connection, message: RemoteSubscriptionChange) -> None:
        """Update the storage ids `peer` wants remote heads of."""
        conn.subscriptions.difference_update(message.remove)
        for storage_id in message.add:
            if len(conn.subscriptions) >= MAX_SUBSCRIPTIONS:
                break
            conn.subscriptions.add(storage_id)

    def remote_heads(
        self,
        conn: Connection,
        message: RemoteHeadsChanged,
        syncing: Mapping[str, Connection] | None,
    ) -> Relay:
        """Relay heads another peer reports to the document's peers subscribed to them.

        Claims about storage we know firsthand are dropped: the server's own, and
        that of the document's other connected peers (whose heads we gossip from
        their sync messages). A peer may report its own storage and third parties'.
        """
        relay = Relay()
        if syncing is None or syncing.get(conn.peer_id) is not conn:
            return relay
        firsthand = {self.storage_id}
        firsthand.update(
            p.metadata.storage_id
            for p in syncing.values()
            if p is not conn and p.metadata.storage_id is not None
        )
        claims = {sid: heads for sid, heads in message.new_heads.items() if sid not in firsthand}
        if len(claims) < len(message.new_heads):
            relay.refused = "remote_heads_firsthand"
        if not claims:
            return relay
        for other in list(syncing.values()):
            if other is conn:
                continue
            wanted = {
                sid: heads
                for sid, heads in claims.items()
                if sid in other.subscriptions and sid != other.metadata.storage_id
            }
            if wanted:
                relay.sends.append(
                    (
                        other,
                        RemoteHeadsChanged(
                            self.peer_id, other.peer_id, message.document_id, wanted
                        ),
                    )
                )
        return relay

    def heads_changed(
        self,
        document_id: DocumentId,
        conn: Connection,
        heads: list[bytes],
        syncing: Mapping[str, Connection],
        now_ms: int,
    ) -> Relay:
        """Tell the document's peers that subscribed to `peer`'s storage what it now
        has (its heads as of its last sync message, at `now_ms`)."""
        relay = Relay()
        storage_id = conn.metadata.storage_id
        if storage_id is None:
            return relay
        remote = RemoteHeads(tuple(b58check_encode(h) for h in heads), now_ms)
        for other in list(syncing.values()):
            if other is not conn and storage_id in other.subscriptions:
                relay.sends.append(
                    (
                        other,
                        RemoteHeadsChanged(
                            self.peer_id, other.peer_id, document_id, {storage_id: remote}
                        ),
                    )
                )
        return relay
