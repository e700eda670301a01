"""Peers and their connections: who is joined, the join and reconnect rules, dispatch.

No I/O. Names, as in the router (`router/core.py`):

- a **`Peer`** is the I/O side of one WebSocket, as the hub sees it: `send` queues
  a message, `close` closes. `syncserver/transport.py` implements it (`WsPeer`).
- a **`Connection`** is the state of one joined client: its peerId (the wire's
  `senderId`), its DID if it authenticated, its metadata, its sync sessions,
  remote-heads subscriptions and orphans. Only the hub mutates it.

On the wire "peer" keeps its automerge-repo meaning (`peerId`, `peer` message).

The rules decided here:

- **Join**: a `join` must offer our protocol version. A peerId already joined is
  replaced only by a join of the same DID (a reconnect whose old socket is not
  noticed dead yet, another tab); otherwise the newcomer is refused: peerIds are
  not secret (ephemeral messages carry them), so a peerId alone must not let
  anyone kick a peer off. That includes two anonymous peers, who cannot prove
  they are the same: an anonymous reconnect is refused until the old socket is
  gone (its close, or the WebSocket ping timeout), and the client's own retry
  (every 5 s in automerge-repo) then gets in.
- **Dispatch** (`route`): before its join a socket may send only `join`; after
  it, every message must carry the joined peerId as `senderId`; a second `join`
  leaves the first; `error`, `peer` and unknown types are ignored.

Cost: one `Connection` per joined socket (a few hundred bytes plus its sessions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from hearth.types import Did, DocumentId
from syncserver.automerge import SyncState
from syncserver.messages import (
    PROTOCOL_VERSION,
    ErrorMessage,
    JoinMessage,
    Message,
    PeerMessage,
    PeerMetadata,
    UnknownMessage,
)

CLOSE_PEER_ID_TAKEN = 1008  # policy violation
CLOSE_NO_COMMON_VERSION = 1002


class Peer(Protocol):
    """The I/O side of one connection, as the hub sees it."""

    def send(self, message: Message) -> None:
        """Queue a message for the peer; never blocks."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Close the connection (asynchronously); later sends are dropped."""
        ...


@dataclass(eq=False)
class Connection:
    """One joined client. Only the hub mutates it."""

    peer_id: str
    did: Did | None
    metadata: PeerMetadata
    peer: Peer
    sessions: dict[DocumentId, SyncState] = field(default_factory=dict)
    subscriptions: set[str] = field(default_factory=set)
    # Documents holding orphans charged to its `source` (it, or another connection of
    # its DID, sent them).
    queued_in: set[DocumentId] = field(default_factory=set)
    closed: bool = False

    @property
    def source(self) -> tuple[str, str]:
        """Whom its orphans are charged to: its DID (all its connections share one
        share of a document's queue), or for an anonymous peer its peerId."""
        return ("did", self.did) if self.did is not None else ("peer", self.peer_id)

    @property
    def persistent_storage_id(self) -> str | None:
        """The storageId whose sync states we persist, if the peer keeps its data."""
        if self.metadata.storage_id is None or self.metadata.is_ephemeral:
            return None
        return self.metadata.storage_id


@dataclass(frozen=True)
class JoinRefused:
    """Answer `error` with `text`, then close with `code`/`close_reason`; count
    `metric` (a refusal reason) if set."""

    text: str
    code: int
    close_reason: str
    metric: str | None = None


@dataclass(frozen=True)
class Route:
    """What to do with one decoded message from a socket (see `route`).

    `action` is "join", "handle", "ignore" or "refuse"; for "refuse", answer
    `error` with `text` and count `metric`."""

    action: Literal["join", "handle", "ignore", "refuse"]
    text: str = ""
    metric: str = ""


def route(conn: Connection | None, message: Message) -> Route:
    """Dispatch rule for a message from a socket whose joined connection is `conn`
    (None before its join). On "join", leave `conn` first if there is one."""
    if isinstance(message, JoinMessage):
        return Route("join")
    if isinstance(message, UnknownMessage | ErrorMessage | PeerMessage):
        return Route("ignore")  # unknown types are ignored; peers never send us error or peer
    if conn is None:
        return Route("refuse", "send join first", "not_joined")
    if message.sender_id != conn.peer_id:
        return Route("refuse", "senderId does not match the joined peerId", "wrong_sender")
    return Route("handle")


class ConnectionTable:
    """Joined connections by peerId, and by whom their orphans are charged to."""

    def __init__(self) -> None:
        self.by_peer_id: dict[str, Connection] = {}
        # Joined connections by whom their orphans are charged to (a DID's connections).
        self._by_source: dict[tuple[str, str], dict[Connection, None]] = {}

    def __len__(self) -> int:
        return len(self.by_peer_id)

    def refuse_join(self, message: JoinMessage, did: Did | None) -> JoinRefused | None:
        """Why the join of `message` by `did` is refused, or None if it may join
        (replacing `replaced(message)` if that is not None)."""
        if PROTOCOL_VERSION not in message.supported_protocol_versions:
            return JoinRefused(
                f"unsupported protocol versions {list(message.supported_protocol_versions)};"
                f" this server speaks {PROTOCOL_VERSION!r}",
                CLOSE_NO_COMMON_VERSION,
                "no common protocol version",
            )
        old = self.by_peer_id.get(message.sender_id)
        if old is not None and (old.did != did or did is None):
            text = (
                "this peerId is already connected anonymously; retry once that socket"
                " is closed, or use your own peerId"
                if did is None and old.did is None
                else "this peerId is connected as another identity; use your own peerId"
            )
            return JoinRefused(
                text, CLOSE_PEER_ID_TAKEN, "peerId in use by another identity", "peer_id_taken"
            )
        return None

    def replaced(self, message: JoinMessage) -> Connection | None:
        """The connection a permitted join replaces (same peerId), if any."""
        return self.by_peer_id.get(message.sender_id)

    def add(self, conn: Connection) -> None:
        self.by_peer_id[conn.peer_id] = conn
        self._by_source.setdefault(conn.source, {})[conn] = None

    def remove(self, conn: Connection) -> None:
        """Forget `conn` and mark it closed; idempotent."""
        conn.closed = True
        if self.by_peer_id.get(conn.peer_id) is conn:
            del self.by_peer_id[conn.peer_id]
        same_source = self._by_source.get(conn.source, {})
        same_source.pop(conn, None)
        if not same_source:
            self._by_source.pop(conn.source, None)

    def heir(self, source: tuple[str, str]) -> Connection | None:
        """A joined connection charged as `source` (another connection of the same
        writer), to take over orphans of one that left."""
        return next(iter(self._by_source.get(source, ())), None)

    def of_did(self, did: Did) -> list[Connection]:
        return [conn for conn in self.by_peer_id.values() if conn.did == did]
