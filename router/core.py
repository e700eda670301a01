"""The router's state and rules, without I/O: connections, interests, dispatch.

The I/O layer (`router.server`) owns sockets and WebSocket framing; for each
connection it hands the core a `Peer` (somewhere to write whole Roomy frames)
and then calls `receive` with every complete WebSocket message. Everything the
core decides to send goes out through `Peer.write`, synchronously, so tests
drive it with in-memory peers.

Hearth extension frames (`welcome`, `error`, `mail`, `signal`, …) go only to
connections that said they understand them (the `hearth.v1` subprotocol);
`Router.write` withholds them from Roomy v0 clients, which get exactly
`join`, `leave` and `send`.

Dispatch: `parse_client_message` turns the header into a typed message, and
the handler registered for that type runs. To add a verb, add its message type
to `router.messages` and call `Router.register(MessageType, handler, rate=...)`
(see docs/router.md, "Adding a verb").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from hearth.types import ConnId, Did, DocumentId
from router.frames import (
    FrameError,
    decode_frame,
    encode_frame,
    frame_from_header_bytes,
    is_v0_frame,
    quote,
)
from router.ids import new_conn_id
from router.limits import Limits, TokenBucket
from router.messages import Listen, MessageError, Send, parse_client_message

log = logging.getLogger("hearth.router")


class Peer(Protocol):
    """The I/O side of one connection, as the core sees it."""

    def write(self, frame: bytes) -> None:
        """Queue one complete Roomy frame; must not block. May close a slow consumer."""

    def close(self, code: int, reason: str) -> None:
        """Close the WebSocket with `code`/`reason`; the I/O layer then calls `disconnect`."""


class Connection:
    """One authenticated connection. Only the core mutates it."""

    __slots__ = (
        "did",
        "conn_id",
        "peer",
        "interests",
        "frames",
        "bytes",
        "errors",
        "verb_buckets",
        "send_prefix",
        "open",
        "hearth",
    )

    def __init__(
        self,
        did: Did,
        conn_id: ConnId,
        peer: Peer,
        limits: Limits,
        now: float,
        *,
        hearth: bool = True,
    ) -> None:
        self.did = did
        self.conn_id = conn_id
        self.peer = peer
        # An ordered set: join order follows the order `listen` named the docs.
        self.interests: dict[DocumentId, None] = {}
        self.frames = TokenBucket(limits.rate_frames, limits.burst_frames, now)
        self.bytes = TokenBucket(limits.rate_bytes, limits.burst_bytes, now)
        self.errors = TokenBucket(limits.error_rate, limits.max_errors, now)
        self.verb_buckets: dict[type, TokenBucket] | None = None
        # `["send","<did>","<connId>",` pre-encoded: relaying only appends the docId.
        self.send_prefix = b'["send",' + quote(did) + b"," + quote(conn_id) + b","
        self.open = True
        # False for a Roomy v0 client: it is sent only join, leave and send.
        self.hearth = hearth


# A verb handler: (connection, typed message, body). Runs synchronously.
Handler = Callable[[Connection, Any, memoryview], None]


class Stats:
    """Counters read by the metrics collector; plain ints to keep the hot path cheap."""

    __slots__ = (
        "frames_in",
        "bytes_in",
        "relayed_frames",
        "relayed_bytes",
        "frames_out",
        "connections_total",
        "withheld",
        "errors",
        "closed",
    )

    def __init__(self) -> None:
        self.frames_in = 0
        self.bytes_in = 0
        self.relayed_frames = 0
        self.relayed_bytes = 0
        self.frames_out = 0
        self.connections_total = 0
        self.withheld = 0  # extension frames not sent to Roomy v0 clients
        self.errors: dict[str, int] = {}  # error frame code -> count
        self.closed: dict[str, int] = {}  # why connections ended -> count

    def count_error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def count_close(self, reason: str) -> None:
        self.closed[reason] = self.closed.get(reason, 0) + 1


class Router:
    """Connections, interest sets and the verb handlers."""

    def __init__(
        self,
        limits: Limits,
        *,
        info: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.info = {**(info or {}), "limits": limits.as_info()}
        self.clock = clock
        self.connections: dict[ConnId, Connection] = {}
        self.by_did: dict[Did, dict[ConnId, Connection]] = {}
        self.docs: dict[DocumentId, dict[ConnId, Connection]] = {}
        self.stats = Stats()
        self._handlers: dict[type, tuple[Handler, float, float]] = {}
        self.register(Listen, self._on_listen, rate=(limits.rate_listen, limits.burst_listen))
        self.register(Send, self._on_send)

    # ------------------------------------------------------------ extension point

    def register(
        self, message_type: type, handler: Handler, *, rate: tuple[float, float] | None = None
    ) -> None:
        """Run `handler` for every parsed message of `message_type`.

        `rate` = (per second, burst) adds a per-connection token bucket for this
        verb on top of the connection-wide frame and byte buckets; frames over it
        get `["error", "rate_limited", …]`.
        """
        per_second, burst = rate if rate is not None else (0.0, 0.0)
        self._handlers[message_type] = (handler, per_second, burst)

    # ------------------------------------------------------------ connection life

    @property
    def full(self) -> bool:
        """True when the router holds its maximum number of connections."""
        return len(self.connections) >= self.limits.max_connections

    def can_connect(self, did: str) -> bool:
        """False when `did` already has the maximum number of connections."""
        conns = self.by_did.get(Did(did))
        return conns is None or len(conns) < self.limits.max_connections_per_did

    def connect(self, did: Did, peer: Peer, *, hearth: bool = True) -> Connection:
        """Register a new authenticated connection and send it `welcome`.

        The caller must have checked `can_connect`. `hearth=False` for a Roomy
        v0 client: it gets no `welcome` and no other extension frame.
        """
        conn_id = new_conn_id()
        while conn_id in self.connections:  # pragma: no cover - 80 random bits
            conn_id = new_conn_id()
        conn = Connection(did, conn_id, peer, self.limits, self.clock(), hearth=hearth)
        self.connections[conn_id] = conn
        self.by_did.setdefault(did, {})[conn_id] = conn
        self.stats.connections_total += 1
        try:
            self.write(conn, encode_frame(["welcome", did, conn_id, self.info]))
        except BaseException:  # a bug: leave nothing registered
            self.disconnect(conn, "internal_error")
            raise
        return conn

    def disconnect(self, conn: Connection, reason: str = "closed") -> None:
        """Forget `conn` and tell its peers it left. Idempotent; never raises.

        The core's state is cleaned first, completely, then peers are told: a
        failure while telling them (a bug) is logged and cannot leave `conn`
        registered anywhere.
        """
        if not conn.open:
            return
        conn.open = False
        self.stats.count_close(reason)
        self.connections.pop(conn.conn_id, None)
        mine = self.by_did.get(conn.did)
        if mine is not None:
            mine.pop(conn.conn_id, None)
            if not mine:
                del self.by_did[conn.did]
        interests = conn.interests
        conn.interests = {}
        conn.verb_buckets = None
        left = self._drop_memberships(conn, interests)
        for doc, members in left:
            try:
                self._tell_leave(conn, doc, members)
            except Exception:  # a bug; the others must still be told
                log.exception("telling %s's peers that it left failed", conn.conn_id)

    # ------------------------------------------------------------ input

    def receive(self, conn: Connection, data: bytes) -> None:
        """Handle one complete WebSocket message from `conn`."""
        if not conn.open:
            return
        stats = self.stats
        stats.frames_in += 1
        stats.bytes_in += len(data)
        now = self.clock()
        if not conn.frames.take(1.0, now):
            self.error(conn, "rate_limited", "too many frames per second", "")
            return
        if not conn.bytes.take(len(data), now):
            self.error(conn, "rate_limited", "too many bytes per second", "")
            return
        try:
            header, body = decode_frame(data)
            msg = parse_client_message(header)
        except FrameError as e:
            self.error(conn, e.code, e.message, "")
            return
        except MessageError as e:
            self.error(conn, e.code, e.message, e.verb)
            return
        entry = self._handlers.get(type(msg))
        if entry is None:  # parsed (e.g. `mail`), but this router has no handler installed
            verb = msg.VERB
            self.error(conn, "unknown_verb", f"verb {verb!r} is not served here", verb)
            return
        handler, per_second, burst = entry
        if burst:
            buckets = conn.verb_buckets
            if buckets is None:
                buckets = conn.verb_buckets = {}
            bucket = buckets.get(type(msg))
            if bucket is None:
                bucket = buckets[type(msg)] = TokenBucket(per_second, burst, now)
            if not bucket.take(1.0, now):
                verb = msg.VERB
                self.error(conn, "rate_limited", f"too many {verb} frames per second", verb)
                return
        handler(conn, msg, body)

    def oversize(self, conn: Connection) -> None:
        """A WebSocket message over `max_frame_bytes` was skipped by the I/O layer."""
        if conn.open:
            self.error(
                conn,
                "too_large",
                f"frame larger than max_frame_bytes ({self.limits.max_frame_bytes})",
                "",
            )

    # ------------------------------------------------------------ output

    def write(self, conn: Connection, frame: bytes) -> None:
        """Send one frame to `conn` (dropped if it has closed).

        Frames other than `join`, `leave` and `send` are dropped for a Roomy v0
        connection (`conn.hearth` False) and counted in `stats.withheld`.
        """
        if conn.open:
            if not conn.hearth and not is_v0_frame(frame):
                self.stats.withheld += 1
                return
            self.stats.frames_out += 1
            conn.peer.write(frame)

    def error(
        self, conn: Connection, code: str, message: str, verb: str, *, abuse: bool = True
    ) -> None:
        """Send `["error", code, message, verb]`; close `conn` after too many abusive errors.

        `abuse=False` for errors an honest client can trigger by racing a peer's
        departure (e.g. `send` to a connection that just closed).
        """
        self.stats.count_error(code)
        self.write(conn, encode_frame(["error", code, message, verb]))
        if abuse and conn.open and not conn.errors.take(1.0, self.clock()):
            log.info("closing %s %s: too many bad frames", conn.did, conn.conn_id)
            conn.peer.close(1008, "too many bad frames")

    # ------------------------------------------------------------ verbs

    def _on_listen(self, conn: Connection, msg: Listen, _body: memoryview) -> None:
        wanted = dict.fromkeys(msg.docs)
        if len(wanted) > self.limits.max_interests:
            self.error(
                conn,
                "too_many_interests",
                f"at most {self.limits.max_interests} docs per connection",
                "listen",
            )
            return
        old = conn.interests
        removed = [doc for doc in old if doc not in wanted]
        added = [doc for doc in wanted if doc not in old]
        # Membership changes completely before anyone is told: if telling
        # fails (a bug), `conn.interests` and `docs` still agree, so closing
        # the connection removes every trace of it.
        conn.interests = wanted
        left = self._drop_memberships(conn, removed)
        joined: list[tuple[DocumentId, dict[ConnId, Connection]]] = []
        for doc in added:
            members = self.docs.get(doc)
            if members is None:
                self.docs[doc] = {conn.conn_id: conn}
            else:
                members[conn.conn_id] = conn
                joined.append((doc, members))
        for doc, members in left:
            self._tell_leave(conn, doc, members)
        for doc, members in joined:
            self._tell_join(conn, doc, members)

    def _drop_memberships(
        self, conn: Connection, docs: Iterable[DocumentId]
    ) -> list[tuple[DocumentId, dict[ConnId, Connection]]]:
        """Remove `conn` from `docs`; return the docs that still have members."""
        left = []
        for doc in docs:
            members = self.docs.get(doc)
            if members is None or members.pop(conn.conn_id, None) is None:
                continue
            if members:
                left.append((doc, members))
            else:
                del self.docs[doc]
        return left

    def _tell_join(
        self, conn: Connection, doc: DocumentId, members: dict[ConnId, Connection]
    ) -> None:
        # Roomy's order: every existing member hears of the newcomer, then the
        # newcomer hears of each of them.
        joined = encode_frame(["join", conn.did, conn.conn_id, doc])
        for other in members.values():
            if other is not conn:
                self.write(other, joined)
        for other in members.values():
            if other is not conn:
                self.write(conn, encode_frame(["join", other.did, other.conn_id, doc]))

    def _tell_leave(
        self, conn: Connection, doc: DocumentId, members: dict[ConnId, Connection]
    ) -> None:
        left = encode_frame(["leave", conn.did, conn.conn_id, doc])
        for other in members.values():
            self.write(other, left)

    def _on_send(self, conn: Connection, msg: Send, body: memoryview) -> None:
        target = self.connections.get(msg.to_conn)
        if target is None or target.did != msg.to_did:
            self.error(conn, "not_found", "no such connection for that DID", "send", abuse=False)
            return
        if target is conn:
            self.error(conn, "to_self", "cannot send to yourself", "send", abuse=False)
            return
        stats = self.stats
        stats.relayed_frames += 1
        stats.relayed_bytes += len(body)
        stats.frames_out += 1
        target.peer.write(frame_from_header_bytes(conn.send_prefix + quote(msg.doc) + b"]", body))
