"""Two Python peers in memory: the sync state machine without JS, and its costs."""

from __future__ import annotations

import copy
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncserver.automerge import (
    AutomergeError,
    Change,
    Document,
    Have,
    SyncMessage,
    SyncState,
    UnsupportedChunkError,
    parse_chunks,
)
from syncserver.automerge.bloom import BloomFilter
from syncserver.automerge.chunk import (
    INFLATE_SLACK,
    TYPE_DOCUMENT,
    compress_change,
    encode_change,
    wrap_chunk,
)
from syncserver.automerge.leb128 import encode_uleb
from syncserver.automerge.message import MAX_HAVE, MAX_HAVE_PROBES
from syncserver.automerge.sync import make_have

from .strategies import FUZZ_SMALL, actor, make_change
from .test_graph import random_dag


def sync_pair(a: Document, b: Document, sa: SyncState, sb: SyncState) -> int:
    messages = 0
    for _ in range(50):
        m1 = a.generate_sync_message(sa)
        if m1 is not None:
            messages += 1
            b.receive_sync_message(sb, m1)
        m2 = b.generate_sync_message(sb)
        if m2 is not None:
            messages += 1
            a.receive_sync_message(sa, m2)
        if m1 is None and m2 is None:
            return messages
    pytest.fail("no quiescence")


@FUZZ_SMALL
@given(st.integers(0, 10_000), st.integers(1, 80), st.floats(0, 1), st.floats(0, 1))
def test_random_subsets_converge(seed: int, n: int, pa: float, pb: float) -> None:
    changes = random_dag(seed, n)
    rnd = random.Random(seed)
    a, b = Document(), Document()
    for c in changes:
        if rnd.random() < pa:
            a.apply(c.raw)
        if rnd.random() < pb:
            b.apply(c.raw)
    # only causally complete prefixes are applied; orphans stay queued
    sync_pair(a, b, SyncState(), SyncState())
    assert a.heads == b.heads
    assert {c.hash for c in a.changes()} == {c.hash for c in b.changes()}


class CountingList(list):  # type: ignore[type-arg]
    """Counts element reads, including whole-list iteration (a history scan)."""

    reads = 0

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        CountingList.reads += 1
        return super().__getitem__(i)

    def __iter__(self):  # type: ignore[no-untyped-def]
        CountingList.reads += len(self)
        return super().__iter__()


def test_a_sync_round_costs_the_changes_exchanged_not_the_history() -> None:
    changes = random_dag(7, 3000, actors=2)
    a = Document.from_chunks(c.raw for c in changes)
    b = Document.from_chunks(c.raw for c in changes)
    sa, sb = SyncState(), SyncState()
    sync_pair(a, b, sa, sb)
    for doc in (a, b):
        doc._graph._deps_idx = CountingList(doc._graph._deps_idx)
        doc._graph._history = CountingList(doc._graph._history)
    CountingList.reads = 0
    extra = make_change(a.heads, 0, a.clock[actor(0)] + 1)
    a.apply(extra)
    assert sync_pair(a, b, sa, sb) <= 3
    assert a.heads == b.heads
    assert 0 < CountingList.reads < 60  # of 3000 changes


def test_bad_message_leaves_document_and_state_untouched() -> None:
    changes = random_dag(8, 10)
    doc = Document.load(b"".join(c.raw for c in changes[:5]))
    state = SyncState(shared_heads=doc.heads)
    before = copy.deepcopy(state)
    good = changes[5].raw
    broken = good[:-1] + bytes([good[-1] ^ 1])
    message = SyncMessage(heads=[changes[5].hash], changes=[good, broken]).encode()
    with pytest.raises(AutomergeError, match="checksum") as err:
        doc.receive_sync_message(state, message)
    assert len(doc) == 5 and state == before
    # The offset is in the message: the broken chunk's checksum field.
    assert err.value.offset == message.rindex(broken) + 4


def test_need_is_answered_and_orphans_are_requested() -> None:
    changes = random_dag(9, 6, actors=1)  # a chain
    full = Document.load(b"".join(c.raw for c in changes))
    partial = Document.load(changes[-1].raw)  # an orphan: its parent is missing
    assert partial.missing_deps() == [changes[-2].hash]
    sf, sp = SyncState(), SyncState()
    sync_pair(full, partial, sf, sp)
    assert partial.heads == full.heads and partial.queued == 0


def test_unknown_last_sync_gets_a_reset_reply() -> None:
    doc = Document.load(b"".join(c.raw for c in random_dag(10, 4)))
    state = SyncState()
    stale = SyncMessage(heads=[b"\x01" * 32], have=[Have([b"\x02" * 32], BloomFilter())])
    doc.receive_sync_message(state, stale.encode())
    reply = doc.generate_sync_message(state)
    assert reply is not None
    decoded = SyncMessage.decode(reply)
    assert decoded.heads == doc.heads and decoded.need == [] and decoded.changes == []
    assert len(decoded.have) == 1 and decoded.have[0].last_sync == []
    assert decoded.have[0].bloom.encode() == b""


@FUZZ_SMALL
@given(st.integers(0, 10_000), st.integers(0, 6))
def test_lost_message_then_reconnect_converges(seed: int, drop: int) -> None:
    changes = random_dag(seed, 40)
    rnd = random.Random(seed)
    a = Document.from_chunks(c.raw for c in changes if rnd.random() < 0.7)
    b = Document.from_chunks(c.raw for c in changes if rnd.random() < 0.7)
    sa, sb = SyncState(), SyncState()
    sent = 0
    for _ in range(10):  # a connection that loses message number `drop`
        for src, dst, s_src, s_dst in ((a, b, sa, sb), (b, a, sb, sa)):
            msg = src.generate_sync_message(s_src)
            if msg is not None:
                sent += 1
                if sent != drop + 1:
                    dst.receive_sync_message(s_dst, msg)
    # reconnect: fresh connections resume from the persisted shared heads
    sync_pair(a, b, SyncState.decode(sa.encode()), SyncState.decode(sb.encode()))
    # Orphans missing from both sides stay queued (only applied changes are synced).
    assert a.heads == b.heads
    assert {c.hash for c in a.changes()} == {c.hash for c in b.changes()}


@FUZZ_SMALL
@given(st.integers(0, 10_000), st.data())
def test_arbitrary_messages_never_raise_anything_but_automerge_error(
    seed: int, data: st.DataObject
) -> None:
    changes = random_dag(seed, 20)
    doc = Document.from_chunks(c.raw for c in changes[:10])
    state = SyncState()
    known = [c.hash for c in changes]
    hashes = st.one_of(st.sampled_from(known), st.binary(min_size=32, max_size=32))
    for _ in range(3):
        msg = SyncMessage(
            heads=data.draw(st.lists(hashes, max_size=3)),
            need=data.draw(st.lists(hashes, max_size=3)),
            have=[
                Have(data.draw(st.lists(hashes, max_size=2)), BloomFilter.from_hashes(hs))
                for hs in data.draw(st.lists(st.lists(hashes, max_size=5), max_size=2))
            ],
            changes=[c.raw for c in data.draw(st.lists(st.sampled_from(changes), max_size=4))],
        )
        try:
            doc.receive_sync_message(state, msg.encode())
        except AutomergeError:
            pass
        reply = doc.generate_sync_message(state)
        if reply is not None:
            decoded = SyncMessage.decode(reply)
            assert decoded.heads == doc.heads
            assert all(doc.has(h) for h in decoded.heads)


def test_in_flight_and_sent_hashes_bookkeeping() -> None:
    changes = random_dag(13, 30)
    a = Document.from_chunks(c.raw for c in changes)
    b = Document.from_chunks(c.raw for c in changes[:10])
    sa, sb = SyncState(), SyncState()
    first = a.generate_sync_message(sa)
    assert first is not None and sa.in_flight
    assert a.generate_sync_message(sa) is None  # waits for an answer
    b.receive_sync_message(sb, first)
    reply = b.generate_sync_message(sb)
    assert reply is not None
    a.receive_sync_message(sa, reply)
    assert not sa.in_flight
    sending = a.generate_sync_message(sa)
    assert sending is not None
    sent = SyncMessage.decode(sending).changes
    assert len(sent) == 20 and sa.sent_hashes == {c.hash for c in changes[10:]}
    # a message from b sent before it got them (not acknowledging): nothing is sent twice
    stale = SyncMessage(heads=b.heads, have=[make_have(b._graph, b.heads)]).encode()
    a.receive_sync_message(sa, stale)
    assert len(sa.sent_hashes) == 20
    again = a.generate_sync_message(sa)
    assert again is not None and SyncMessage.decode(again).changes == []
    b.receive_sync_message(sb, sending)
    ack = b.generate_sync_message(sb)
    assert ack is not None
    a.receive_sync_message(sa, ack)
    assert sa.sent_hashes == set() and sa.shared_heads == a.heads == b.heads
    assert a.generate_sync_message(sa) is None


def _inflating_change(who: int, size: int) -> bytes:
    """A valid compressed (type-2) change whose body inflates to about ``size`` bytes."""
    raw = encode_change(
        deps=[], actor=actor(who), seq=1, start_op=1, columns=b"\x00" + b"\x00" * size
    )
    (change,) = parse_chunks(raw)
    assert isinstance(change, Change)
    return compress_change(change)


def test_compressed_changes_share_one_inflation_budget_per_message() -> None:
    # Each chunk alone is far below the old per-chunk cap; together they inflate
    # ~1000x the message. The budget is per message, so the message is refused.
    chunks = [_inflating_change(who, 256 * 1024) for who in range(40)]
    message = SyncMessage(heads=[], changes=chunks).encode()
    assert len(message) < 20_000
    doc, state = Document(), SyncState()
    with pytest.raises(AutomergeError, match="budget") as err:
        doc.receive_sync_message(state, message)
    # The first chunk past the budget, at its DEFLATE body, as an offset in the message.
    assert message.index(chunks[0]) < err.value.offset < len(message)
    assert len(doc) == 0 and state == SyncState()
    # So is one blob of them, and an explicit cap lowers the budget further.
    with pytest.raises(AutomergeError, match="budget"):
        Document().apply(b"".join(chunks))
    small = _inflating_change(99, 40_000)
    with pytest.raises(AutomergeError, match="budget"):
        Document().apply(small, max_inflated=10_000)


def test_honest_compressed_changes_are_accepted_in_a_message() -> None:
    changes = random_dag(11, 30)
    packed = [compress_change(c) for c in changes]
    doc, state = Document(), SyncState()
    added = doc.receive_sync_message(state, SyncMessage(changes=packed).encode())
    assert set(added) == {c.hash for c in changes}
    # A small input may still inflate to the fixed slack, whatever its ratio.
    big = _inflating_change(5, INFLATE_SLACK // 2)
    assert len(Document().apply(big)) == 1


def _many_haves(n: int, bloom: bytes = b"") -> bytes:
    """A v1 message with no heads or needs and ``n`` copies of one ``have`` entry."""
    entry = b"\x00" + encode_uleb(len(bloom)) + bloom
    return b"\x42\x00\x00" + encode_uleb(n) + entry * n + b"\x00"


def test_have_entries_are_capped() -> None:
    assert len(SyncMessage.decode(_many_haves(MAX_HAVE)).have) == MAX_HAVE
    # The audit's message: 40 KB of two-byte entries, 20,000 Have objects before.
    for n in (MAX_HAVE + 1, 20_000):
        with pytest.raises(AutomergeError, match="have entries") as err:
            SyncMessage.decode(_many_haves(n))
        assert err.value.offset == 3
    doc = Document.load(b"".join(c.raw for c in random_dag(12, 50)))
    state = SyncState()
    with pytest.raises(AutomergeError):
        doc.receive_sync_message(state, _many_haves(20_000))
    assert state == SyncState()


@FUZZ_SMALL
@given(
    st.integers(0, 3 * MAX_HAVE),
    st.integers(1, 40),
    st.lists(st.binary(min_size=32, max_size=32), max_size=20),
)
def test_bloom_work_per_candidate_is_bounded(n: int, probes: int, members: list[bytes]) -> None:
    filt = BloomFilter.from_hashes(members)
    filt.probes = probes
    message = _many_haves(n, filt.encode())
    nonempty = n if members else 0
    if n > MAX_HAVE or nonempty * probes > MAX_HAVE_PROBES:
        with pytest.raises(AutomergeError):
            SyncMessage.decode(message)
        return
    decoded = SyncMessage.decode(message)
    assert len(decoded.have) == n
    assert sum(h.bloom.probes for h in decoded.have if h.bloom.entries) <= MAX_HAVE_PROBES


def test_answering_many_haves_checks_only_non_empty_filters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    changes = random_dag(13, 300)
    doc = Document.load(b"".join(c.raw for c in changes))
    calls = 0
    original = BloomFilter.__contains__

    def counting(self: BloomFilter, h: object) -> bool:
        nonlocal calls
        calls += 1
        return original(self, h)

    monkeypatch.setattr(BloomFilter, "__contains__", counting)
    one = BloomFilter.from_hashes(c.hash for c in changes[:10]).encode()
    message = b"\x42\x00\x00" + encode_uleb(MAX_HAVE)
    message += (b"\x00\x00") * (MAX_HAVE - 1) + b"\x00" + encode_uleb(len(one)) + one + b"\x00"
    state = SyncState()
    doc.receive_sync_message(state, message)
    reply = doc.generate_sync_message(state)
    assert reply is not None
    # One non-empty filter: one check per candidate, not MAX_HAVE.
    assert calls <= len(changes) + 10
    assert len(SyncMessage.decode(reply).changes) >= len(changes) - 10


def test_a_whole_document_chunk_in_a_sync_message_is_refused_and_not_kept() -> None:
    changes = random_dag(5, 6)
    doc = Document.from_chunks(c.raw for c in changes[:3])
    state = SyncState()
    # The heads of a document chunk are all this core reads of it; the rest is opaque.
    body = encode_uleb(0) + encode_uleb(1) + changes[5].hash + bytes(4096)
    document = wrap_chunk(TYPE_DOCUMENT, body)
    message = SyncMessage(
        heads=[changes[5].hash], have=[Have()], changes=[changes[3].raw, document]
    ).encode()
    with pytest.raises(UnsupportedChunkError, match="whole-document chunk") as caught:
        doc.receive_sync_message(state, message)
    assert message[caught.value.offset :].startswith(document)
    # Nothing applied, nothing kept, the sync state untouched.
    assert len(doc) == 3 and doc.queued == 0 and doc.document_chunks == []
    assert state.their_heads is None
    # The same changes without it go in.
    ok = SyncMessage(heads=[changes[3].hash], have=[Have()], changes=[changes[3].raw]).encode()
    assert doc.receive_sync_message(state, ok) == [changes[3].hash]
