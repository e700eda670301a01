"""One peer pair: a WebRTC data channel when it can be had, the router relay otherwise.

A `PeerLink` belongs to a `peer.Peer` and exists while the other connection
shares at least one document with us. It owns:

* a `SequencedStream` (peer/transport.py), so messages are delivered once and
  in order whichever path carried them, and whatever a dying path had in
  flight is sent again on the next one;
* at most one aiortc `RTCPeerConnection` with one data channel. The side whose
  `(did, connId)` sorts first offers; each attempt has a generation number, a
  newer offer replaces the connection, and a failed or closed attempt (ICE
  timeout, channel closed, connection failed) is retried by the offerer after
  a backoff (the answerer asks for it with `restart`);
* a writer task that sends each packet over the channel when it is open,
  otherwise over the router's `send`, holding data for up to `relay_delay`
  seconds at first so a channel about to open carries everything.

The I/O is aiortc's and the router client's; the rules are in
`SequencedStream` and here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

from hearth.types import ConnId, Did, DocumentId
from peer.messages import (
    Answer,
    Candidate,
    Offer,
    Restart,
    SignalBody,
    encode_signal_body,
)
from peer.transport import ACK, SequencedStream, StreamOverflow, TransportError

log = logging.getLogger("hearth.peer")


ACK_DELAY = 0.01  # seconds an ack may wait to cover more packets
CHANNEL_HIGH_WATER = 256 * 1024  # stop writing into a data channel above this buffered amount
CHANNEL_LOW_WATER = 64 * 1024  # and resume below this
MAX_SIGNALS_QUEUED = 64  # signal bodies waiting to be handled; more are dropped


class Path(StrEnum):
    CHANNEL = "channel"
    RELAY = "relay"


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """How a peer connects. Times are seconds.

    `ice_servers=None` asks the router (`ice-servers` verb); a list (W3C
    RTCIceServer dicts, `[]` for host candidates only) is used as given.
    """

    ice_servers: list[dict[str, Any]] | None = None
    ice_transport_policy: str = "all"  # "relay": TURN only
    webrtc: bool = True  # False: relay only (for comparisons)
    ice_timeout: float = 10.0  # a channel must open this long after the offer
    relay_delay: float = 1.0  # hold data this long for a first channel (0: relay at once)
    retry_min: float = 1.0  # first wait before a new attempt after a failure
    retry_max: float = 30.0
    rto: float = 2.0  # resend what is unacknowledged after this long
    max_fragment: int = 16 * 1024
    window: int = 4 << 20  # unacknowledged bytes before `send` refuses (backpressure)
    max_message: int = 64 << 20  # largest application message, either way
    max_ahead_bytes: int = 8 << 20  # out-of-order payload held for one link


@dataclass(slots=True)
class PathCounters:
    """Packets and bytes (stream packets, headers included) per path and direction."""

    sent_bytes: dict[str, int] = field(default_factory=lambda: {p.value: 0 for p in Path})
    received_bytes: dict[str, int] = field(default_factory=lambda: {p.value: 0 for p in Path})
    sent_packets: dict[str, int] = field(default_factory=lambda: {p.value: 0 for p in Path})
    received_packets: dict[str, int] = field(default_factory=lambda: {p.value: 0 for p in Path})


SignalSender = Callable[[Did, ConnId, DocumentId, bytes], Coroutine[Any, Any, None]]
RelaySender = Callable[[Did, ConnId, DocumentId, bytes], Coroutine[Any, Any, None]]
IceSource = Callable[[], Coroutine[Any, Any, list[dict[str, Any]]]]
Deliver = Callable[["PeerLink", bytes], None]
OnFail = Callable[["PeerLink", str], None]


def _rtc_servers(servers: list[dict[str, Any]]) -> list[RTCIceServer]:
    out = []
    for s in servers:
        out.append(
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        )
    return out


class PeerLink:
    """The connection to one other router connection; created and closed by `Peer`.

    Call `start()` once, `send()` for each application message (only while
    `window_open`; otherwise `await drained()` first), `receive()` with every
    relayed packet from that connection, `signal()` with every signal body from
    it, and `close()` when it leaves. `on_fail(link, reason)` runs when the
    other side broke the stream's limits; the owner must then close the link.
    """

    def __init__(
        self,
        *,
        local: tuple[Did, ConnId],
        remote: tuple[Did, ConnId],
        doc: DocumentId,
        config: PeerConfig,
        send_signal: SignalSender,
        send_relay: RelaySender,
        ice_source: IceSource,
        deliver: Deliver,
        on_fail: OnFail | None = None,
    ) -> None:
        self.did, self.conn_id = remote
        self.local = local
        self.docs: dict[DocumentId, None] = {doc: None}
        self.config = config
        self.offerer = local < remote
        self.stream = SequencedStream(
            max_fragment=config.max_fragment,
            window=config.window,
            max_message=config.max_message,
            max_ahead_bytes=config.max_ahead_bytes,
            rto=config.rto,
        )
        self.counters = PathCounters()
        self.generation = 0
        self.channels_opened = 0
        self.attempts_failed = 0
        self.closed = False
        self.failure: str | None = None  # why the stream was given up, if it was
        self.signals_dropped = 0
        self.channel_open_event = asyncio.Event()
        self.changed = asyncio.Event()  # set when a channel opens or an attempt fails
        self._send_signal = send_signal
        self._send_relay = send_relay
        self._ice_source = ice_source
        self._deliver = deliver
        self._on_fail = on_fail
        self._loop = asyncio.get_running_loop()
        self._pc: Any = None
        self._dc: Any = None
        self._failed_gen = 0
        self._outbox: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._hold_until = self._loop.time() + (config.relay_delay if config.webrtc else 0.0)
        self._ack_scheduled = False
        self._buffer_low = asyncio.Event()
        self._window_event = asyncio.Event()
        self._window_event.set()
        self._signals: asyncio.Queue[SignalBody] = asyncio.Queue(MAX_SIGNALS_QUEUED)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: list[asyncio.TimerHandle] = []

    # ------------------------------------------------------------ public

    @property
    def doc(self) -> DocumentId:
        """The document named in relayed `send` and `signal` frames (any shared one)."""
        return next(iter(self.docs))

    @property
    def path(self) -> Path:
        """Where new packets go right now."""
        return Path.CHANNEL if self._channel_ready() else Path.RELAY

    def start(self) -> None:
        self._spawn(self._writer())
        self._spawn(self._resender())
        self._spawn(self._signal_loop())
        if self.config.webrtc and self.offerer:
            self._spawn(self._attempt())

    @property
    def window_open(self) -> bool:
        """True while `send` accepts a message (and once the link is closed)."""
        return self.closed or self.stream.window_open

    def send(self, message: bytes) -> None:
        """Queue one application message (delivered once, in order); dropped once closed.

        Raises `peer.transport.WindowFull` while the window is closed (wait for
        `drained()`) and `MessageTooLarge` over `config.max_message`.
        """
        if self.closed or self.failure is not None:
            return
        self._enqueue(self.stream.send(message, time.monotonic()))
        if not self.stream.window_open:
            self._window_event.clear()

    async def drained(self) -> None:
        """Wait until the unacknowledged data is under the window, or the link closed."""
        await self._window_event.wait()

    def receive(self, packet: bytes, path: Path) -> None:
        """Feed one packet that arrived from this connection over `path`."""
        if self.closed or self.failure is not None:
            return
        self.counters.received_bytes[path] += len(packet)
        self.counters.received_packets[path] += 1
        try:
            messages = self.stream.receive(packet, time.monotonic())
        except StreamOverflow as e:
            self._fail(f"{e} (over {path})")
            return
        except TransportError as e:
            log.warning("bad packet from %s over %s: %s", self.conn_id, path, e)
            return
        if self.stream.window_open:
            self._window_event.set()
        if not self._ack_scheduled and packet[:1] == b"\x01":
            # one cumulative ack per ACK_DELAY: on a busy channel acks would
            # otherwise double the number of SCTP messages
            self._ack_scheduled = True
            self._loop.call_later(ACK_DELAY, self._flush_ack)
        for message in messages:
            self._deliver(self, message)

    def signal(self, body: SignalBody) -> None:
        """Handle a signal body from this connection (in arrival order).

        At most MAX_SIGNALS_QUEUED wait; more are dropped (an honest peer sends
        a handful per attempt, and a lost one only costs an ICE timeout).
        """
        if self.closed:
            return
        try:
            self._signals.put_nowait(body)
        except asyncio.QueueFull:
            self.signals_dropped += 1
            log.warning("dropping a signal from %s: %d queued", self.conn_id, MAX_SIGNALS_QUEUED)

    def disable_webrtc(self) -> None:
        """Stop trying channels (the router cannot signal): everything goes by relay."""
        self.config = dataclasses.replace(self.config, webrtc=False)
        self._hold_until = 0.0
        self.generation += 1  # any attempt in progress is now stale
        self._spawn(self._close_pc())
        self._wake.set()

    async def wait_channel(self) -> None:
        await self.channel_open_event.wait()

    def stats(self) -> dict[str, Any]:
        return {
            "did": self.did,
            "connId": self.conn_id,
            "path": self.path.value,
            "offerer": self.offerer,
            "generation": self.generation,
            "channelsOpened": self.channels_opened,
            "attemptsFailed": self.attempts_failed,
            "sentBytes": dict(self.counters.sent_bytes),
            "receivedBytes": dict(self.counters.received_bytes),
            "sentPackets": dict(self.counters.sent_packets),
            "receivedPackets": dict(self.counters.received_packets),
            "duplicates": self.stream.duplicates,
            "retransmitted": self.stream.retransmitted,
            "unackedBytes": self.stream.unacked_bytes,
            "bufferedBytes": self.stream.buffered_bytes,
            "droppedAhead": self.stream.dropped_ahead,
            "signalsDropped": self.signals_dropped,
            "failure": self.failure,
        }

    async def close(self) -> None:
        """Stop everything; idempotent."""
        if self.closed:
            return
        self.closed = True
        self._window_event.set()  # wake senders waiting in drained()
        for timer in self._timers:
            timer.cancel()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._close_pc()

    def _fail(self, reason: str) -> None:
        """The other side broke the stream: stop using it and tell the owner."""
        if self.failure is not None:
            return
        self.failure = reason
        log.warning("giving up the link to %s %s: %s", self.did, self.conn_id, reason)
        if self._on_fail is not None:
            self._on_fail(self, reason)
        else:
            self._spawn(self.close())

    # ------------------------------------------------------------ sending

    def _channel_ready(self) -> bool:
        dc = self._dc
        return dc is not None and dc.readyState == "open"

    def _enqueue(self, packets: list[bytes]) -> None:
        if packets:
            self._outbox.extend(packets)
            self._wake.set()

    def _flush_ack(self) -> None:
        self._ack_scheduled = False
        ack = self.stream.take_ack()
        if ack is None:
            return
        outbox = self._outbox
        if outbox and outbox[-1][0] == ACK:
            # acks are cumulative: a newer one replaces one still waiting to go,
            # so a stalled path does not collect one ack per ACK_DELAY
            outbox[-1] = ack
        else:
            self._enqueue([ack])

    def _switch_path(self) -> None:
        # Whatever was queued or in flight on the old path goes again, in order.
        self._outbox.clear()
        now = time.monotonic()
        self._enqueue([self.stream.current_ack(), *self.stream.retransmit_all(now)])

    async def _writer(self) -> None:
        outbox = self._outbox
        counters = self.counters
        while True:
            if not outbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._channel_ready():
                dc = self._dc
                while outbox and dc.bufferedAmount < CHANNEL_HIGH_WATER:
                    packet = outbox.popleft()
                    dc.send(packet)
                    counters.sent_bytes[Path.CHANNEL] += len(packet)
                    counters.sent_packets[Path.CHANNEL] += 1
                if outbox and dc.bufferedAmount >= CHANNEL_HIGH_WATER:
                    # aiortc queues without bound: wait until SCTP has sent most of it
                    # (a failed attempt sets the event too, so we never wait on a dead channel)
                    self._buffer_low.clear()
                    await self._buffer_low.wait()
                else:
                    await asyncio.sleep(0)  # let aiortc's SCTP transport run
                continue
            hold = self._hold_until - self._loop.time()
            if hold > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), hold)
                continue
            packet = outbox.popleft()
            try:
                await self._send_relay(self.did, self.conn_id, self.doc, packet)
            except Exception as e:  # NotConnected: the resend timer brings it back
                log.debug("relay send to %s failed: %s", self.conn_id, e)
                continue
            counters.sent_bytes[Path.RELAY] += len(packet)
            counters.sent_packets[Path.RELAY] += 1

    async def _resender(self) -> None:
        period = max(self.config.rto / 4, 0.01)
        while True:
            await asyncio.sleep(period)
            # SCTP already retransmits on a channel; the relay may drop (rate limits, restarts)
            # copies still queued from the last round would only pile up: skip
            if (
                not self._channel_ready()
                and self._hold_until <= self._loop.time()
                and not self._outbox
            ):
                self._enqueue(self.stream.due(time.monotonic()))

    # ------------------------------------------------------------ WebRTC

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("peer link task failed", exc_info=task.exception())

    async def _signal(self, body: SignalBody) -> None:
        with contextlib.suppress(Exception):
            await self._send_signal(self.did, self.conn_id, self.doc, encode_signal_body(body))

    async def _new_pc(self, gen: int) -> Any:
        await self._close_pc()
        servers = (
            self.config.ice_servers
            if self.config.ice_servers is not None
            else await self._ice_source()
        )
        policy = RTCIceTransportPolicy(self.config.ice_transport_policy)
        pc = RTCPeerConnection(
            configuration=RTCConfiguration(
                iceServers=_rtc_servers(servers), iceTransportPolicy=policy
            )
        )
        self._pc = pc

        def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and pc is self._pc:
                self._attempt_failed(gen, f"connection {pc.connectionState}")

        pc.on("connectionstatechange", on_state)

        return pc

    def _watch_channel(self, dc: Any, gen: int) -> None:
        def on_open() -> None:
            self._channel_opened(dc, gen)

        dc.on("open", on_open)

        def on_message(data: bytes | str) -> None:
            if isinstance(data, bytes):
                self.receive(data, Path.CHANNEL)

        dc.on("message", on_message)

        def on_close() -> None:
            if dc is self._dc:
                self._attempt_failed(gen, "channel closed")

        dc.on("close", on_close)

        if dc.readyState == "open":
            self._channel_opened(dc, gen)

    def _channel_opened(self, dc: Any, gen: int) -> None:
        if self.closed or gen != self.generation or dc is self._dc:
            return
        log.info("channel to %s open (generation %d)", self.conn_id, gen)
        self._dc = dc
        dc.bufferedAmountLowThreshold = CHANNEL_LOW_WATER
        dc.on("bufferedamountlow", self._buffer_low.set)
        self.channels_opened += 1
        self.channel_open_event.set()
        self.changed.set()
        self._switch_path()

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        now = self._loop.time()
        self._timers = [t for t in self._timers if t.when() > now and not t.cancelled()]
        self._timers.append(self._loop.call_later(delay, callback))

    def _arm_timeout(self, gen: int) -> None:
        def fire() -> None:
            if gen == self.generation and not self._channel_ready():
                self._attempt_failed(gen, "ICE timeout")

        self._later(self.config.ice_timeout, fire)

    def _attempt_failed(self, gen: int, why: str) -> None:
        if self.closed or gen != self.generation or gen <= self._failed_gen:
            return
        self._failed_gen = gen
        self.attempts_failed += 1
        log.info("channel attempt %d to %s failed: %s", gen, self.conn_id, why)
        had_channel = self._dc is not None
        self._dc = None
        self.channel_open_event.clear()
        self.changed.set()
        self._buffer_low.set()
        self._hold_until = 0.0  # relay from now on until a channel opens
        if had_channel or self._outbox:
            self._switch_path()
        self._wake.set()
        pc, self._pc = self._pc, None
        if pc is not None:
            self._spawn(self._close(pc))
        if self.offerer:
            delay = min(
                self.config.retry_max,
                self.config.retry_min * 2 ** min(self.attempts_failed - 1, 16),
            )
            self._later(delay, lambda: self._retry(gen))
        else:
            self._spawn(self._signal(Restart(gen)))

    def _retry(self, gen: int) -> None:
        if not self.closed and gen == self.generation and self.config.webrtc:
            self._spawn(self._attempt())

    async def _attempt(self) -> None:
        self.generation += 1
        gen = self.generation
        pc = await self._new_pc(gen)
        if gen != self.generation:
            return
        dc = pc.createDataChannel("hearth")
        self._watch_channel(dc, gen)
        await pc.setLocalDescription(await pc.createOffer())
        if gen != self.generation or self.closed:
            return
        await self._signal(Offer(gen, pc.localDescription.sdp))
        self._arm_timeout(gen)

    async def _close_pc(self) -> None:
        pc, self._pc = self._pc, None
        if self._dc is not None:
            # replaced under an open channel (a newer offer): what it had in flight goes again
            self._dc = None
            self.channel_open_event.clear()
            self._buffer_low.set()
            if not self.closed:
                self._switch_path()
        if pc is not None:
            await self._close(pc)

    @staticmethod
    async def _close(pc: Any) -> None:
        with contextlib.suppress(Exception):
            await pc.close()

    async def _signal_loop(self) -> None:
        while True:
            body = await self._signals.get()
            try:
                await self._on_signal(body)
            except Exception as e:  # a bad SDP from the other side must not kill the link
                log.warning("signal from %s failed: %s", self.conn_id, e)

    async def _on_signal(self, body: SignalBody) -> None:
        if isinstance(body, Offer):
            if self.offerer or not self.config.webrtc:
                return  # the rule says we offer; a crossed offer is ignored
            if body.gen <= self.generation and self._pc is not None:
                return
            self.generation = body.gen
            pc = await self._new_pc(body.gen)

            def on_datachannel(dc: Any) -> None:
                if pc is self._pc:
                    self._watch_channel(dc, body.gen)

            pc.on("datachannel", on_datachannel)

            await pc.setRemoteDescription(RTCSessionDescription(body.sdp, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            if body.gen != self.generation or self.closed:
                return
            await self._signal(Answer(body.gen, pc.localDescription.sdp))
            self._arm_timeout(body.gen)
        elif isinstance(body, Answer):
            pc = self._pc
            if body.gen == self.generation and pc is not None:
                if pc.signalingState == "have-local-offer":
                    await pc.setRemoteDescription(RTCSessionDescription(body.sdp, "answer"))
        elif isinstance(body, Candidate):
            pc = self._pc
            if body.gen == self.generation and pc is not None and body.candidate:
                text = body.candidate.removeprefix("candidate:")
                candidate = candidate_from_sdp(text)
                candidate.sdpMid = body.sdp_mid
                candidate.sdpMLineIndex = body.sdp_mline_index
                await pc.addIceCandidate(candidate)
        elif isinstance(body, Restart):
            if self.offerer and body.gen == self.generation:
                self._attempt_failed(body.gen, "the answerer gave up")
