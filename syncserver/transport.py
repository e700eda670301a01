"""WebSocket glue: frames in, decoded messages to the hub; hub messages out through a queue."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from starlette.websockets import WebSocket, WebSocketDisconnect

from hearth.types import Did
from syncserver.hub import Peer, SyncHub
from syncserver.messages import (
    ErrorMessage,
    JoinMessage,
    Message,
    MessageError,
    PeerMessage,
    UnknownMessage,
    decode_message,
    encode_message,
)
from syncserver.metrics import SyncMetrics

log = logging.getLogger("hearth.syncserver")

CLOSE_SLOW_CONSUMER = 1008


class WsConnection:
    """Outgoing side of one socket: `send` queues, a writer task drains.

    The queue is bounded in bytes: a peer that does not read fast enough to
    keep it under `max_queue_bytes` is disconnected rather than allowed to
    grow the server's memory. automerge-repo reconnects and resumes.
    """

    def __init__(self, ws: WebSocket, metrics: SyncMetrics, max_queue_bytes: int) -> None:
        self._ws = ws
        self._metrics = metrics
        self._max = max_queue_bytes
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._closing: tuple[int, str] | None = None

    def send(self, message: Message) -> None:
        if self._closing is not None:
            return
        data = encode_message(message)
        if self._queue and self._queued + len(data) > self._max:
            log.warning("closing a slow consumer (%d bytes queued)", self._queued)
            self._metrics.refused.labels("slow_consumer").inc()
            self._queue.clear()
            self._queued = 0
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer: send queue full")
            return
        self._queue.append(data)
        self._queued += len(data)
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = (code, reason[:120])
            self._wake.set()

    async def run_writer(self) -> None:
        """Send queued frames until closed; run as a task for the socket's lifetime."""
        try:
            while True:
                while self._queue:
                    data = self._queue.popleft()
                    self._queued -= len(data)
                    await self._ws.send_bytes(data)
                    self._metrics.bytes_out.inc(len(data))
                if self._closing is not None:
                    code, reason = self._closing
                    await self._ws.close(code, reason)
                    return
                self._wake.clear()
                await self._wake.wait()
        except (WebSocketDisconnect, RuntimeError, OSError):
            # The peer went away; the reader side notices and cleans up.
            self._closing = self._closing or (1006, "gone")


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
) -> None:
    """Run one accepted WebSocket until it closes.

    Until the peer has joined, a frame over ``max_unjoined_frame`` bytes gets an
    `error` and closes the socket with 1009 without being decoded.
    """
    conn = WsConnection(ws, metrics, max_queue_bytes)
    writer = asyncio.create_task(conn.run_writer())
    peer: Peer | None = None
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
                conn.send(_error(hub, peer, "frames must be binary CBOR"))
                continue
            metrics.bytes_in.inc(len(data))
            if peer is None and len(data) > max_unjoined_frame:
                metrics.refused.labels("unjoined_too_big").inc()
                conn.send(
                    _error(hub, peer, f"frames before join may be {max_unjoined_frame} bytes")
                )
                conn.close(CLOSE_TOO_BIG, "frame too big before join")
                break
            try:
                message = decode_message(data)
            except MessageError as e:
                metrics.refused.labels("malformed").inc()
                conn.send(_error(hub, peer, f"malformed message: {e}"))
                continue
            kind = type(message).__name__
            metrics.messages_in.labels(kind).inc()
            if isinstance(message, JoinMessage):
                if peer is not None:
                    await hub.leave(peer)
                peer = await hub.join(conn, message, did)
                continue
            if isinstance(message, UnknownMessage | ErrorMessage | PeerMessage):
                continue  # unknown types are ignored; peers never send us error or peer
            if peer is None:
                metrics.refused.labels("not_joined").inc()
                conn.send(_error(hub, peer, "send join first"))
                continue
            if message.sender_id != peer.peer_id:
                metrics.refused.labels("wrong_sender").inc()
                conn.send(_error(hub, peer, "senderId does not match the joined peerId"))
                continue
            try:
                await hub.handle(peer, message)
            except Exception:
                log.exception("error handling a message; closing that connection")
                conn.close(1011, "internal error")
                break
    except WebSocketDisconnect:
        pass
    finally:
        if peer is not None:
            await hub.leave(peer)
        conn.close(1000, "bye")
        await writer


def _error(hub: SyncHub, peer: Peer | None, text: str) -> ErrorMessage:
    return ErrorMessage(hub.peer_id, peer.peer_id if peer is not None else "", text)
