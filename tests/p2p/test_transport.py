"""SequencedStream: in-memory paths that lose, duplicate and reorder packets."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.transport import (
    MessageTooLarge,
    SequencedStream,
    StreamOverflow,
    TransportError,
    WindowFull,
)


def deliver(dst: SequencedStream, packets: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for p in packets:
        out.extend(dst.receive(p, 0.0))
    return out


def test_in_order_roundtrip_and_fragmentation() -> None:
    a, b = SequencedStream(max_fragment=10), SequencedStream(max_fragment=10)
    msgs = [b"", b"x", b"0123456789", b"y" * 95]
    packets = [p for m in msgs for p in a.send(m, 0.0)]
    assert len(packets) == 1 + 1 + 1 + 10
    assert deliver(b, packets) == msgs
    ack = b.take_ack()
    assert ack is not None and b.take_ack() is None
    assert a.unacked_bytes == 106
    a.receive(ack, 0.0)
    assert a.idle and a.unacked_bytes == 0


def test_path_switch_loses_in_flight_then_retransmit_dedups() -> None:
    a, b = SequencedStream(), SequencedStream()
    relay = [p for i in range(5) for p in a.send(b"r%d" % i, 0.0)]
    # the relay delivers 0..2, then dies with 3..4 in flight
    got = deliver(b, relay[:3])
    # the channel opens: everything unacked goes again, then new data
    channel = a.retransmit_all(1.0) + a.send(b"c0", 1.0)
    got += deliver(b, channel)
    assert got == [b"r0", b"r1", b"r2", b"r3", b"r4", b"c0"]
    assert b.duplicates == 3


def test_reordering_across_paths() -> None:
    a, b = SequencedStream(), SequencedStream()
    p = [a.send(b"%d" % i, 0.0)[0] for i in range(4)]
    assert b.receive(p[2], 0.0) == []
    assert b.receive(p[3], 0.0) == []
    assert b.receive(p[0], 0.0) == [b"0"]
    assert b.receive(p[1], 0.0) == [b"1", b"2", b"3"]
    assert b.receive(p[3], 0.0) == []  # late duplicate


def test_due_resends_after_rto_without_ack_progress() -> None:
    a, b = SequencedStream(rto=1.0), SequencedStream()
    first = a.send(b"a", 0.0)
    second = a.send(b"b", 0.8)
    assert a.due(0.5) == []
    assert a.due(1.0) == first + second
    assert a.due(1.5) == []  # the timer restarted
    # progress (an ack for the first) restarts the timer too
    b.receive(first[0], 1.6)
    ack = b.take_ack()
    assert ack is not None
    a.receive(ack, 1.9)
    assert a.due(2.5) == []
    assert a.due(2.9) == second


def test_window() -> None:
    a = SequencedStream(window=100)
    a.send(b"x" * 99, 0.0)
    assert a.window_open
    a.send(b"x", 0.0)
    assert not a.window_open


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x03",
        b"\x01\x00",
        b"\x02\x00",
        b"\x01" + b"\x00" * 9,
        b"\x02" + b"\x00" * 7 + b"\x09",
    ],
)
def test_malformed(packet: bytes) -> None:
    with pytest.raises(TransportError):
        SequencedStream().receive(packet, 0.0)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 50), min_size=1, max_size=30),
    seed=st.integers(0, 2**32),
)
def test_lossy_duplicating_reordering_path(sizes: list[int], seed: int) -> None:
    rng = random.Random(seed)
    a, b = SequencedStream(max_fragment=8), SequencedStream(max_fragment=8)
    msgs = [bytes([i % 256]) * n for i, n in enumerate(sizes)]
    in_flight: list[bytes] = []
    for m in msgs:
        in_flight += a.send(m, 0.0)
    got: list[bytes] = []
    now = 0.0
    for _round in range(200):
        rng.shuffle(in_flight)
        kept = [p for p in in_flight if rng.random() > 0.3]
        kept += [p for p in kept if rng.random() < 0.2]
        got += deliver(b, kept)
        ack = b.take_ack()
        if ack is not None and rng.random() > 0.3:
            a.receive(ack, now)
        if a.idle:
            break
        now += 10.0
        in_flight = a.due(now)
    assert a.idle
    assert got == msgs


def test_send_refuses_oversize_messages_and_a_full_window() -> None:
    a = SequencedStream(max_fragment=10, window=100, max_message=50)
    with pytest.raises(MessageTooLarge, match="max_message"):
        a.send(b"x" * 51, 0.0)
    assert a.idle and a.unacked_bytes == 0  # nothing was queued
    assert len(a.send(b"x" * 50, 0.0)) == 5
    a.send(b"x" * 50, 0.0)
    assert not a.window_open
    with pytest.raises(WindowFull):
        a.send(b"", 0.0)
    assert a.unacked_bytes == 100
    # the seq space has no gap: the refused sends took no sequence number
    b = SequencedStream(max_fragment=10)
    assert deliver(b, a.retransmit_all(0.0)) == [b"x" * 50, b"x" * 50]


def test_reassembly_over_max_message_breaks_the_stream() -> None:
    big = SequencedStream(max_fragment=10, max_message=1000)
    b = SequencedStream(max_message=35)
    packets = big.send(b"y" * 40, 0.0)  # four fragments, 40 bytes > 35
    assert deliver(b, packets[:3]) == []
    assert b.buffered_bytes == 30
    with pytest.raises(StreamOverflow, match="max_message"):
        b.receive(packets[3], 0.0)
    assert b.buffered_bytes == 0
    # one unfragmented packet over the limit too
    c = SequencedStream(max_message=35)
    with pytest.raises(StreamOverflow):
        c.receive(SequencedStream(max_message=100).send(b"z" * 36, 0.0)[0], 0.0)


def test_out_of_order_data_is_capped_in_bytes() -> None:
    a = SequencedStream(max_fragment=100)
    b = SequencedStream(max_ahead_bytes=250)
    packets = [a.send(b"%03d" % i + b"." * 97, 0.0)[0] for i in range(6)]
    for p in packets[1:]:  # everything but the first: all ahead of a gap
        assert b.receive(p, 0.0) == []
    assert b.buffered_bytes == 200  # two kept, three dropped over 250 bytes
    assert b.dropped_ahead == 3
    got = b.receive(packets[0], 0.0)
    assert [m[:3] for m in got] == [b"000", b"001", b"002"]
    assert b.buffered_bytes == 0
    # the dropped ones come back by retransmission
    got = deliver(b, a.retransmit_all(1.0))
    assert [m[:3] for m in got] == [b"003", b"004", b"005"]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 60), min_size=1, max_size=30),
    seed=st.integers(0, 2**32),
)
def test_receiver_memory_stays_bounded(sizes: list[int], seed: int) -> None:
    # A lossy, reordering path with a tiny out-of-order budget: the receiver never
    # holds more than max_ahead_bytes + max_message, and still gets everything.
    rng = random.Random(seed)
    max_ahead_bytes, max_message = 24, 60
    a = SequencedStream(max_fragment=8, max_message=max_message)
    b = SequencedStream(max_ahead_bytes=max_ahead_bytes, max_message=max_message)
    msgs = [bytes([i % 256]) * n for i, n in enumerate(sizes)]
    in_flight: list[bytes] = []
    for m in msgs:
        in_flight += a.send(m, 0.0)
    got: list[bytes] = []
    now = 0.0
    for _round in range(500):
        rng.shuffle(in_flight)
        kept = [p for p in in_flight if rng.random() > 0.3]
        for p in kept:
            got += b.receive(p, now)
            assert b.buffered_bytes <= max_ahead_bytes + max_message
        ack = b.take_ack()
        if ack is not None:
            a.receive(ack, now)
        if a.idle:
            break
        now += 10.0
        in_flight = a.due(now)
    assert a.idle
    assert got == msgs
