"""Reliable, ordered messages between two peers over changing paths. No I/O.

A `SequencedStream` sits between the application and whatever carries bytes
between one pair of connections: a WebRTC data channel when one is open, the
router's relayed `send` otherwise. Either path may lose what was in flight
when it goes away, and the two paths race each other during a switch, so the
stream numbers every packet, keeps what the other side has not acknowledged,
drops duplicates and delivers in order:

    stream = SequencedStream()
    for packet in stream.send(message, now):      # fragments of one message
        path.write(packet)
    for message in stream.receive(packet, now):   # 0..n whole messages, in order
        app.deliver(message)
    ack = stream.take_ack()                       # write it, if not None
    for packet in stream.retransmit_all(now):     # after switching path
        new_path.write(packet)
    for packet in stream.due(now):                # periodically: unacked too long
        path.write(packet)

Packets on the wire:

    DATA  01 | seq: u64 BE | flags: u8 (bit 0: more fragments follow) | payload
    ACK   02 | cumulative seq: u64 BE (every seq <= it was received)

Messages larger than `max_fragment` are cut into fragments (a data channel
message should stay well under 64 KiB to reach every browser); no message may
exceed `max_message` bytes (`send` raises `MessageTooLarge`).

Costs, all bounded: the sender keeps every unacknowledged fragment, at most
`window` bytes plus one message, because the caller must not call `send`
while `window_open` is False (`send` raises `WindowFull`). The receiver keeps
the fragments of one incomplete message, at most `max_message` bytes (a peer
that sends more has broken the protocol: `receive` raises `StreamOverflow` and
the stream must be dropped), and fragments that arrived ahead of a gap, at
most `max_ahead` of them and `max_ahead_bytes` of payload (later ones are
dropped and come back by retransmission).
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

DATA = 0x01
ACK = 0x02
FLAG_MORE = 0x01

_DATA_HEAD = struct.Struct(">BQB")
_ACK = struct.Struct(">BQ")

DEFAULT_MAX_FRAGMENT = 16 * 1024
DEFAULT_WINDOW = 4 << 20
DEFAULT_MAX_AHEAD = 8192
DEFAULT_MAX_AHEAD_BYTES = 8 << 20
DEFAULT_MAX_MESSAGE = 64 << 20
DEFAULT_RTO = 2.0


class TransportError(ValueError):
    """A packet that does not parse; the caller should drop it (and may log it)."""


class StreamOverflow(TransportError):
    """The other side sent a message over `max_message`: the stream cannot go on.

    The caller must drop the stream (and whatever carries it) and may log why.
    """


class MessageTooLarge(ValueError):
    """`send` was given a message over `max_message` bytes; nothing was queued."""


class WindowFull(RuntimeError):
    """`send` was called while `window_open` is False; nothing was queued."""


@dataclass(slots=True)
class _Unacked:
    packet: bytes
    sent_at: float


class SequencedStream:
    """Sequencing, acknowledgement, resending and reassembly for one peer pair.

    The caller must write every packet returned by `send`, `retransmit_all` and
    `due` to the current path, and write `take_ack()` after feeding received
    packets (one cumulative ack covers a whole batch).
    """

    def __init__(
        self,
        *,
        max_fragment: int = DEFAULT_MAX_FRAGMENT,
        window: int = DEFAULT_WINDOW,
        max_ahead: int = DEFAULT_MAX_AHEAD,
        max_ahead_bytes: int = DEFAULT_MAX_AHEAD_BYTES,
        max_message: int = DEFAULT_MAX_MESSAGE,
        rto: float = DEFAULT_RTO,
    ) -> None:
        if max_fragment <= 0:
            raise ValueError("max_fragment must be positive")
        self.max_fragment = max_fragment
        self.window = window
        self.max_ahead = max_ahead
        self.max_ahead_bytes = max_ahead_bytes
        self.max_message = max_message
        self.rto = rto
        # sending
        self._next_seq = 1
        self._unacked: OrderedDict[int, _Unacked] = OrderedDict()
        self._unacked_bytes = 0
        self._progress_at = 0.0  # last ack progress, or first send after idle
        # receiving
        self._expected = 1
        self._ahead: dict[int, tuple[int, bytes]] = {}
        self._ahead_bytes = 0
        self._partial: list[bytes] = []
        self._partial_bytes = 0
        self._ack_owed = False
        # counters
        self.duplicates = 0
        self.retransmitted = 0
        self.dropped_ahead = 0  # packets ahead of a gap dropped over max_ahead(_bytes)

    # ------------------------------------------------------------ sending

    @property
    def unacked_bytes(self) -> int:
        """Payload bytes sent but not yet acknowledged."""
        return self._unacked_bytes

    @property
    def window_open(self) -> bool:
        """False while unacknowledged bytes exceed `window`: stop calling `send`."""
        return self._unacked_bytes < self.window

    @property
    def idle(self) -> bool:
        """True when everything sent has been acknowledged."""
        return not self._unacked

    @property
    def buffered_bytes(self) -> int:
        """Received payload bytes held: ahead of a gap, and of an incomplete message."""
        return self._ahead_bytes + self._partial_bytes

    def send(self, message: bytes, now: float) -> list[bytes]:
        """Packets for one message (at least one, even for b""); all must be written.

        Raises `MessageTooLarge` over `max_message` bytes and `WindowFull` while
        `window_open` is False; either way nothing is queued.
        """
        if len(message) > self.max_message:
            raise MessageTooLarge(
                f"message of {len(message)} bytes over max_message ({self.max_message})"
            )
        if not self.window_open:
            raise WindowFull(f"{self._unacked_bytes} bytes unacknowledged (window {self.window})")
        size = self.max_fragment
        pieces = [message[i : i + size] for i in range(0, len(message), size)] or [b""]
        packets = []
        if not self._unacked:
            self._progress_at = now
        last = len(pieces) - 1
        for i, piece in enumerate(pieces):
            seq = self._next_seq
            self._next_seq += 1
            packet = _DATA_HEAD.pack(DATA, seq, FLAG_MORE if i < last else 0) + piece
            self._unacked[seq] = _Unacked(packet, now)
            self._unacked_bytes += len(piece)
            packets.append(packet)
        return packets

    def retransmit_all(self, now: float) -> list[bytes]:
        """Every unacknowledged packet, oldest first (after a path switch)."""
        self._progress_at = now
        out = []
        for entry in self._unacked.values():
            entry.sent_at = now
            out.append(entry.packet)
        self.retransmitted += len(out)
        return out

    def due(self, now: float) -> list[bytes]:
        """Every unacknowledged packet if the ack has not advanced for `rto`, else [].

        One timer for the whole stream, as TCP has: it restarts whenever an ack
        makes progress, so a slow but moving path is never flooded with copies.
        """
        if not self._unacked or now - self._progress_at < self.rto:
            return []
        self._progress_at = now
        out = []
        for entry in self._unacked.values():
            entry.sent_at = now
            out.append(entry.packet)
        self.retransmitted += len(out)
        return out

    def _acked(self, upto: int, now: float) -> None:
        unacked = self._unacked
        if unacked and next(iter(unacked)) <= upto:
            self._progress_at = now
        while unacked:
            seq = next(iter(unacked))
            if seq > upto:
                break
            entry = unacked.pop(seq)
            self._unacked_bytes -= len(entry.packet) - _DATA_HEAD.size

    # ------------------------------------------------------------ receiving

    def receive(self, packet: bytes, now: float) -> list[bytes]:
        """Feed one packet; returns the messages it completes, in order.

        Raises TransportError for a packet that does not parse (drop it), and
        StreamOverflow, a TransportError, when the other side broke
        `max_message` (drop the stream).
        """
        if not packet:
            raise TransportError("empty packet")
        kind = packet[0]
        if kind == ACK:
            if len(packet) != _ACK.size:
                raise TransportError(f"ack of {len(packet)} bytes")
            _, upto = _ACK.unpack(packet)
            if upto >= self._next_seq:
                raise TransportError(f"ack for {upto}, never sent")
            self._acked(upto, now)
            return []
        if kind != DATA:
            raise TransportError(f"unknown packet type {kind}")
        if len(packet) < _DATA_HEAD.size:
            raise TransportError(f"data packet of {len(packet)} bytes")
        _, seq, flags = _DATA_HEAD.unpack_from(packet)
        if seq == 0:
            raise TransportError("sequence number 0")
        self._ack_owed = True
        expected = self._expected
        if seq < expected or seq in self._ahead:
            self.duplicates += 1
            return []
        payload = packet[_DATA_HEAD.size :]
        if seq > expected:
            if (
                seq - expected <= self.max_ahead
                and self._ahead_bytes + len(payload) <= self.max_ahead_bytes
            ):
                self._ahead[seq] = (flags, payload)
                self._ahead_bytes += len(payload)
            else:
                self.dropped_ahead += 1  # it comes back by retransmission
            return []
        out: list[bytes] = []
        self._take(flags, payload, out)
        seq += 1
        ahead = self._ahead
        while seq in ahead:
            flags, payload = ahead.pop(seq)
            self._ahead_bytes -= len(payload)
            self._take(flags, payload, out)
            seq += 1
        self._expected = seq
        return out

    def _take(self, flags: int, payload: bytes, out: list[bytes]) -> None:
        total = self._partial_bytes + len(payload)
        if total > self.max_message:
            self._partial = []
            self._partial_bytes = 0
            raise StreamOverflow(f"incoming message over max_message ({self.max_message} bytes)")
        if flags & FLAG_MORE:
            self._partial.append(payload)
            self._partial_bytes = total
            return
        if self._partial:
            self._partial.append(payload)
            out.append(b"".join(self._partial))
            self._partial = []
            self._partial_bytes = 0
        else:
            out.append(payload)

    def take_ack(self) -> bytes | None:
        """The cumulative ack owed after received data, or None if none is owed."""
        if not self._ack_owed:
            return None
        self._ack_owed = False
        return _ACK.pack(ACK, self._expected - 1)

    def current_ack(self) -> bytes:
        """The cumulative ack for everything received so far (to repeat it on a new path)."""
        self._ack_owed = False
        return _ACK.pack(ACK, self._expected - 1)

    @property
    def received_upto(self) -> int:
        """Highest sequence number received with nothing missing before it."""
        return self._expected - 1
