from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncserver.automerge import (
    AutomergeError,
    Change,
    Document,
    QueueFullError,
    QueueLimits,
    parse_chunks,
)
from syncserver.automerge.chunk import encode_change
from syncserver.automerge.graph import ChangeGraph

from .jshelper import JsError, JsHelper, b64
from .strategies import FUZZ_SMALL, actor, make_change


def random_dag(seed: int, n: int, actors: int = 3) -> list[Change]:
    """``n`` changes by ``actors`` actors with random merges, in a causal order."""
    rnd = random.Random(seed)
    tips: list[bytes | None] = [None] * actors
    seqs = [0] * actors
    out: list[Change] = []
    for _ in range(n):
        who = rnd.randrange(actors)
        deps = {t for t in [tips[who]] if t is not None}
        if out and rnd.random() < 0.3:
            deps.add(rnd.choice(out).hash)
        seqs[who] += 1
        (c,) = parse_chunks(make_change(sorted(deps), who, seqs[who]))
        assert isinstance(c, Change)
        out.append(c)
        tips[who] = c.hash
    return out


def ancestors(changes: list[Change], heads: set[bytes]) -> set[bytes]:
    by_hash = {c.hash: c for c in changes}
    seen: set[bytes] = set()
    stack = [h for h in heads if h in by_hash]
    while stack:
        h = stack.pop()
        if h not in seen:
            seen.add(h)
            stack.extend(by_hash[h].deps)
    return seen


def test_out_of_order_changes_wait_for_deps() -> None:
    changes = random_dag(1, 60)
    doc = Document()
    late = changes[10]
    added = doc.apply(b"".join(c.raw for c in changes if c is not late))
    blocked = {c.hash for c in changes if late.hash in ancestors(changes, {c.hash})}
    assert doc.missing_deps() == [late.hash]
    assert doc.queued == len(blocked) - 1 > 0 and len(doc) + doc.queued == 59
    assert set(added) == {c.hash for c in changes} - blocked
    released = doc.apply(late.raw)
    assert released[0] == late.hash and set(released) == blocked
    assert doc.missing_deps() == [] and doc.queued == 0
    reference = Document.load(b"".join(c.raw for c in changes))
    assert doc.heads == reference.heads
    assert doc.apply(late.raw) == []  # duplicates are no-ops


def test_missing_deps_includes_unknown_heads_only() -> None:
    changes = random_dag(2, 5)
    doc = Document.load(b"".join(c.raw for c in changes))
    unknown = b"\x07" * 32
    assert doc.missing_deps([changes[0].hash, unknown]) == [unknown]


def test_causal_order_and_clock() -> None:
    changes = random_dag(3, 80)
    shuffled = changes[:]
    random.Random(9).shuffle(shuffled)
    doc = Document.from_chunks(c.raw for c in shuffled)
    position = {c.hash: i for i, c in enumerate(doc.changes())}
    assert len(position) == 80
    assert all(position[d] < position[c.hash] for c in changes for d in c.deps)
    assert doc.clock == {
        c.actor: max(x.seq for x in changes if x.actor == c.actor) for c in changes
    }
    assert Document.load(doc.save()).heads == doc.heads


def test_conflicting_seq_rejected_without_changing_anything() -> None:
    changes = random_dag(4, 10, actors=1)
    doc = Document.load(b"".join(c.raw for c in changes))
    forged = make_change([], 0, 5, message="forged")
    with pytest.raises(AutomergeError, match="seq 5"):
        doc.apply(make_change([], 0, 11) + forged)
    assert len(doc) == 10 and doc.heads == [changes[-1].hash]


@FUZZ_SMALL
@given(st.integers(0, 10_000), st.integers(1, 60), st.lists(st.integers(0, 59), max_size=4))
def test_since_and_ancestors_match_brute_force(seed: int, n: int, picks: list[int]) -> None:
    changes = random_dag(seed, n)
    graph = ChangeGraph()
    for c in changes:
        graph.add(c)
    heads = {changes[p % n].hash for p in picks}
    covered = ancestors(changes, heads)
    since = graph.since(heads)
    if heads:
        assert {c.hash for c in since} == {c.hash for c in changes} - covered
    else:
        assert len(since) == n
    order = {c.hash: i for i, c in enumerate(changes)}
    assert [order[c.hash] for c in since] == sorted(order[c.hash] for c in since)
    candidates = {changes[(p * 7) % n].hash for p in range(5)}
    assert graph.ancestors_among(heads, candidates) == candidates & covered


def _chain(who: int, n: int) -> list[Change]:
    out: list[Change] = []
    for seq in range(1, n + 1):
        (c,) = parse_chunks(make_change([out[-1].hash] if out else [], who, seq))
        assert isinstance(c, Change)
        out.append(c)
    return out


@pytest.mark.parametrize(
    ("case", "reason"),
    [("gap", "has seq 3, expected 2"), ("zero", "seq 0"), ("dup", "different change with seq 1")],
)
def test_seq_rules_reject_what_js_refuses(js: JsHelper, case: str, reason: str) -> None:
    (one,) = _chain(1, 1)
    bad = {
        "gap": make_change([one.hash], 1, 3),
        "zero": encode_change(deps=[], actor=actor(2), seq=0, start_op=1),
        "dup": make_change([], 1, 1, message="forged"),
    }[case]
    doc = Document.load(one.raw)
    with pytest.raises(AutomergeError, match=reason):
        doc.apply(bad)
    assert doc.heads == [one.hash] and doc.queued == 0
    with pytest.raises(JsError):
        js.call("load", data=b64(one.raw + bad))
    assert js.call("load", data=b64(one.raw))["heads"] == [one.hash.hex()]


def test_queued_change_breaking_seq_rule_is_dropped_on_release() -> None:
    c1, c2 = _chain(1, 2)
    forged = make_change([c2.hash], 3, 5)  # actor 3's first change claims seq 5
    (f,) = parse_chunks(forged)
    dependent = make_change([f.hash], 4, 1)
    doc = Document.load(c1.raw + forged + dependent)
    assert doc.queued == 2 and doc.missing_deps() == [c2.hash]
    assert doc.apply(c2.raw) == [c2.hash]  # the honest change is not held hostage
    assert doc.heads == [c2.hash] and doc.queued == 0 and doc.missing_deps() == []
    assert doc._graph.dropped == 1


def test_load_of_save_keeps_order() -> None:
    changes = random_dag(12, 50)
    doc = Document.from_chunks(c.raw for c in reversed(changes))
    blob = doc.save()
    assert Document.load(blob).save() == blob


def test_queue_limits_refuse_the_whole_batch() -> None:
    changes = random_dag(21, 40, actors=1)  # a chain: everything after [0] waits for it
    doc = Document(limits=QueueLimits(changes=20))
    with pytest.raises(QueueFullError, match="at most 20"):
        doc.apply(b"".join(c.raw for c in changes[1:]))
    assert doc.queued == 0 and len(doc) == 0 and doc.missing_deps() == []
    doc.apply(b"".join(c.raw for c in changes[1:21]))  # exactly at the limit
    assert doc.queued == 20 and doc.queued_bytes == sum(len(c.raw) for c in changes[1:21])
    with pytest.raises(QueueFullError):
        doc.apply(changes[21].raw)
    # Releasing the queue makes room; what the root releases is not counted.
    assert len(doc.apply(changes[0].raw + b"".join(c.raw for c in changes[21:]))) == 40
    assert doc.queued == 0 and doc.queued_bytes == 0
    by_bytes = Document(limits=QueueLimits(bytes=len(changes[1].raw)))
    by_bytes.apply(changes[1].raw)
    with pytest.raises(QueueFullError, match="bytes"):
        by_bytes.apply(changes[2].raw)


def test_missing_deps_stays_right_as_the_queue_changes() -> None:
    changes = random_dag(22, 30)
    doc = Document()
    holes = {changes[5].hash, changes[12].hash}
    doc.apply(b"".join(c.raw for c in changes if c.hash not in holes))
    for hole in sorted(holes, key=lambda h: [c.hash for c in changes].index(h)):
        expected = sorted(holes)
        assert doc.missing_deps() == expected == doc.missing_deps()
        doc.apply(next(c for c in changes if c.hash == hole).raw)
        holes.discard(hole)
    assert doc.missing_deps() == [] and doc.queued == 0 and len(doc) == 30


def test_dropped_changes_leave_no_waiting_entries() -> None:
    graph = ChangeGraph()
    other = b"\x07" * 32
    (root,) = parse_chunks(make_change([], 1, 1))
    # seq 3 on top of seq 1: queued while root is absent, dropped once released,
    # together with `child`, which also waits for `other`.
    (bad,) = parse_chunks(make_change([root.hash], 1, 3))
    assert isinstance(root, Change) and isinstance(bad, Change)
    (child,) = parse_chunks(make_change(sorted([bad.hash, other]), 2, 1))
    assert isinstance(child, Change)
    graph.add_batch([bad, child])
    assert graph.missing_deps() == sorted([root.hash, other])
    assert graph.add(root) == [root.hash]
    assert graph.queued == 0 and graph.queued_bytes == 0 and graph.dropped == 1
    assert graph.missing_deps() == [] and other not in graph._waiting
