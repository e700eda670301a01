"""WebSocket glue: frames in, decoded messages to the hub (dispatched by `peers.route`);
hub messages out through a queue (`WsPeer`, the `Peer` of one socket)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from starlette.websockets import WebSocket, WebSocketDisconnect

from hearth.types import Did
from syncserver.hub import SyncHub
from syncserver.messages import (
    ErrorMessage,
    JoinMessage,
    Message,
    MessageError,
    decode_message,
    encode_message,
)
from syncserver.metrics import SyncMetrics
from syncserver.outgoing import CLOSE_SERVER_BUSY, SHED_GRACE, OutgoingBudget
from syncserver.peers import Connection, route

log = logging.getLogger("hearth.syncserver")

CLOSE_SLOW_CONSUMER = 1008


#: The ASGI scope extension under which `SyncWebSocketProtocol` puts the socket's
#: asyncio transport (see `syncserver/wsprotocol.py`).
TRANSPORT_EXTENSION = "hearth.transport"


def scope_transport(ws: WebSocket) -> asyncio.Transport | None:
    """The socket's asyncio transport, if the server exposes it (our uvicorn protocol)."""
    extension = ws.scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
    if isinstance(extension, dict):
        transport = extension.get("transport")
        if isinstance(transport, asyncio.Transport):
            return transport
    return None


class WsPeer:
    """Outgoing side of one socket: `send` queues, a writer task drains.

    What it holds for the peer (its queue, the frame being written, and what the
    asyncio transport still buffers when the server exposes it) is bounded by
    `max_queue_bytes` beyond the biggest frame the socket may still hold (a first
    sync of a big document is one message, maybe bigger than the bound): a peer
    that does not read fast enough to keep under it is closed with 1008 rather than
    allowed to grow the server's memory. The same bytes count
    against the process-wide `budget`, which may shed this connection when others
    need the room (see `syncserver/outgoing.py`). automerge-repo reconnects and
    resumes.
    """

    def __init__(
        self,
        ws: WebSocket,
        metrics: SyncMetrics,
        max_queue_bytes: int,
        budget: OutgoingBudget | None = None,
    ) -> None:
        self._ws = ws
        self._metrics = metrics
        self._max = max_queue_bytes
        self._budget = budget
        self._transport = scope_transport(ws)
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._in_hand = 0  # the frame being written
        # The biggest frame given to the socket since its buffer was last seen empty.
        self._big_frame = 0
        self._wake = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self._abort_timer: asyncio.TimerHandle | None = None
        if budget is not None:
            budget.add(self, time.monotonic())

    def buffered_bytes(self) -> int:
        held = self._queued + self._in_hand
        if self._transport is not None:
            held += self._transport.get_write_buffer_size()
        return held

    def send(self, message: Message) -> None:
        if self._closing is not None:
            return
        data = encode_message(message)
        held = self.buffered_bytes()
        # The bound applies beyond the biggest frame the socket may still hold: one
        # message bigger than the bound (a first sync of a big document) must not get
        # its reader closed for the small messages that come in behind it.
        behind = held - min(self._big_frame, held - self._queued)
        if behind and behind + len(data) > self._max:
            log.warning("closing a slow consumer (%d bytes held)", held)
            self._metrics.refused.labels("slow_consumer").inc()
            self.shed(CLOSE_SLOW_CONSUMER, "slow consumer: send queue full")
            if self._budget is not None:
                self._budget.mark_shed(self)
            return
        self._queue.append(data)
        self._queued += len(data)
        self._wake.set()
        if self._budget is not None:
            self._budget.update(self, time.monotonic())

    def shed(self, code: int, reason: str) -> None:
        """Drop what is queued and close after the frame in hand; abort the transport
        if the peer has not read what it holds within `SHED_GRACE` seconds."""
        if code == CLOSE_SERVER_BUSY:
            log.warning("closing a slow consumer: outgoing total over its bound")
            self._metrics.refused.labels("server_busy").inc()
        self._queue.clear()
        self._queued = 0
        self.close(code, reason)
        if self._transport is not None and self._abort_timer is None:
            self._abort_timer = asyncio.get_running_loop().call_later(SHED_GRACE, self.abort)

    def abort(self) -> None:
        self._queue.clear()
        self._queued = 0
        self.close(CLOSE_SERVER_BUSY, "aborted: not reading")
        if self._transport is not None:
            # Also when it is closing: a closing transport keeps its buffer until the
            # peer reads it, which a peer that never reads never does.
            self._transport.abort()

    def close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = (code, reason[:120])
            self._wake.set()

    def finished(self) -> None:
        """The socket is gone: stop counting it. Call once, after the writer ended."""
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        if self._budget is not None:
            self._budget.remove(self)

    async def run_writer(self) -> None:
        """Send queued frames until closed; run as a task for the socket's lifetime."""
        try:
            while True:
                while self._queue:
                    data = self._queue.popleft()
                    self._queued -= len(data)
                    self._in_hand = len(data)
                    self._big_frame = max(self._big_frame, len(data))
                    await self._ws.send_bytes(data)
                    self._in_hand = 0
                    if self._transport is None or not self._transport.get_write_buffer_size():
                        self._big_frame = 0
                    self._metrics.bytes_out.inc(len(data))
                    # Not held past its write: the transport has its own copy now.
                    del data
                    if self._budget is not None:
                        self._budget.update(self, time.monotonic())
                if self._closing is not None:
                    code, reason = self._closing
                    await self._ws.close(code, reason)
                    return
                self._wake.clear()
                await self._wake.wait()
        except (WebSocketDisconnect, RuntimeError, OSError):
            # The peer went away; the reader side notices and cleans up.
            self._closing = self._closing or (1006, "gone")
        finally:
            self._in_hand = 0


CLOSE_TOO_BIG = 1009
#: Largest frame accepted before the peer has joined (a JS `join` is ~150 bytes).
DEFAULT_MAX_UNJOINED_FRAME = 64 * 1024


async def serve_socket(
    ws: WebSocket,
    hub: SyncHub,
    metrics: SyncMetrics,
    did: Did | None,
    max_queue_bytes: int,
    max_unjoined_frame: int = DEFAULT_MAX_UNJOINED_FRAME,
    budget: OutgoingBudget | None = None,
) -> None:
    """Run one accepted WebSocket until it closes.

    Until the peer has joined, a frame over ``max_unjoined_frame`` bytes gets an
    `error` and closes the socket with 1009 without being decoded.
    """
    peer = WsPeer(ws, metrics, max_queue_bytes, budget)
    writer = asyncio.create_task(peer.run_writer())
    conn: Connection | None = None
    try:
        while True:
            event = await ws.receive()
            if event["type"] == "websocket.disconnect":
                break
            data = event.get("bytes")
            if data is None:
                text = event.get("text") or ""
                metrics.bytes_in.inc(len(text))
                metrics.refused.labels("text_frame").inc()
                peer.send(_error(hub, conn, "frames must be binary CBOR"))
                continue
            metrics.bytes_in.inc(len(data))
            if conn is None and len(data) > max_unjoined_frame:
                metrics.refused.labels("unjoined_too_big").inc()
                peer.send(
                    _error(hub, conn, f"frames before join may be {max_unjoined_frame} bytes")
                )
                peer.close(CLOSE_TOO_BIG, "frame too big before join")
                break
            try:
                message = decode_message(data)
            except MessageError as e:
                metrics.refused.labels("malformed").inc()
                peer.send(_error(hub, conn, f"malformed message: {e}"))
                continue
            kind = type(message).__name__
            metrics.messages_in.labels(kind).inc()
            decision = route(conn, message)
            if decision.action == "join":
                assert isinstance(message, JoinMessage)
                if conn is not None:
                    await hub.leave(conn)
                conn = await hub.join(peer, message, did)
                continue
            if decision.action == "ignore":
                continue
            if decision.action == "refuse":
                metrics.refused.labels(decision.metric).inc()
                peer.send(_error(hub, conn, decision.text))
                continue
            assert conn is not None
            try:
                await hub.handle(conn, message)
            except Exception:
                log.exception("error handling a message; closing that connection")
                peer.close(1011, "internal error")
                break
    except WebSocketDisconnect:
        pass
    finally:
        if conn is not None:
            await hub.leave(conn)
        peer.close(1000, "bye")
        # A peer that does not read may never let the close frame out.
        done, _ = await asyncio.wait({writer}, timeout=SHED_GRACE)
        if not done:
            peer.abort()
            await writer
        peer.finished()


def _error(hub: SyncHub, conn: Connection | None, text: str) -> ErrorMessage:
    return ErrorMessage(hub.peer_id, conn.peer_id if conn is not None else "", text)
