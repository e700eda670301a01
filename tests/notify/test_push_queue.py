"""The push scheduler on its own: no sockets, a fake clock (plain floats)."""

from __future__ import annotations

import itertools

import pytest

from router.push_queue import (
    MAX_IDLE_ORIGINS,
    Drop,
    Finish,
    PushLimits,
    PushScheduler,
    Ticket,
)

A, B, C = "https://a.push", "https://b.push", "https://c.push"


def sched(**limits: float) -> PushScheduler[str]:
    return PushScheduler(PushLimits(**limits), rng=lambda: 1.0)  # type: ignore[arg-type]


def drain(s: PushScheduler[str], now: float = 0.0) -> list[Ticket[str]]:
    out = []
    while (t := s.next(now)) is not None:
        out.append(t)
    return out


def test_origins_and_owners_take_turns() -> None:
    s = sched(concurrency=1)
    for i in range(100):
        assert s.submit(f"flood{i}", A, "mallory", 0.0) is None
    for i in range(50):
        assert s.submit(f"same-origin{i}", A, "carol", 0.0) is None
    assert s.submit("bob", B, "bob", 0.0) is None
    order = []
    for _ in range(6):
        t = s.next(0.0)
        assert t is not None and s.next(0.0) is None  # one at a time
        order.append(t.item)
        assert s.finish(t, Finish.DONE, 0.0) is None
    # A and B alternate; within A, mallory and carol alternate; each in order
    assert order == ["flood0", "bob", "same-origin0", "flood1", "same-origin1", "flood2"]
    assert s.held == 150 - 6 + 1


def test_caps_per_origin_and_per_owner() -> None:
    s = sched(concurrency=10, per_origin=3, per_owner=2)
    for i in range(20):
        s.submit(f"a{i}", A, "mallory", 0.0)
        s.submit(f"b{i}", B, "mallory", 0.0)
    s.submit("a-bob", A, "bob", 0.0)
    s.submit("c-carol", C, "carol", 0.0)
    started = drain(s)
    items = [t.item for t in started]
    assert sum(t.owner == "mallory" for t in started) == 2
    assert "a-bob" in items and "c-carol" in items  # not stuck behind mallory's 40
    assert sum(1 for t in started if t.origin == A) <= 3
    assert s.in_flight == 4
    # a slot of mallory's frees: the next one goes out, still within every cap
    mallorys = [t for t in started if t.owner == "mallory"]
    s.finish(mallorys[0], Finish.DONE, 0.0)
    (t,) = drain(s)
    assert t.owner == "mallory"


def test_global_concurrency_cap() -> None:
    s = sched(concurrency=2, per_origin=10, per_owner=10)
    for i in range(5):
        s.submit(str(i), A, f"o{i}", 0.0)
    assert len(drain(s)) == 2 and s.in_flight == 2


def test_bounds_in_all_and_per_owner() -> None:
    s = sched(max_held=10, max_held_per_owner=4)
    assert [s.submit("m", A, "mallory", 0.0) for _ in range(5)] == [None] * 4 + [Drop.OWNER_FULL]
    for i in range(6):
        assert s.submit("x", B, f"o{i}", 0.0) is None
    assert s.submit("late", C, "bob", 0.0) is Drop.QUEUE_FULL
    assert s.held == 10 and s.held_by("mallory") == 4
    t = s.next(0.0)
    assert t is not None
    s.finish(t, Finish.DONE, 0.0)
    assert s.submit("late", C, "bob", 0.0) is None
    assert s.stats.dropped == {Drop.OWNER_FULL: 1, Drop.QUEUE_FULL: 1}


def test_circuit_opens_drops_and_probes() -> None:
    s = sched(concurrency=10, per_origin=10, per_owner=10, breaker_failures=3,
              breaker_open=30.0, breaker_open_max=100.0, max_attempts=9)  # fmt: skip
    for i in range(10):
        s.submit(f"dead{i}", A, "mallory", 0.0)
    s.submit("alive", B, "bob", 0.0)
    flying = drain(s)
    assert len(flying) == 10
    dead = [t for t in flying if t.origin == A]
    # two failures: retried later; the third opens the circuit
    for t in dead[:2]:
        assert s.finish(t, Finish.UNREACHABLE, 1.0) is None
    assert s.finish(dead[2], Finish.UNREACHABLE, 1.0) is Drop.CIRCUIT_OPEN
    assert s.stats.circuit_trips == 1 and s.circuits_open(1.0) == 1
    assert s.submit("more", A, "mallory", 2.0) is Drop.CIRCUIT_OPEN
    assert s.submit("other", B, "bob", 2.0) is None  # other origins unaffected
    # the rest of what was in flight comes back: dropped, the circuit stays as it was
    for t in dead[3:]:
        assert s.finish(t, Finish.UNREACHABLE, 2.0) is Drop.CIRCUIT_OPEN
    assert s.stats.circuit_trips == 1
    # the two retries fall due while it is open: dropped
    assert [t.item for t in drain(s, 25.0)] == ["other"]
    assert s.held_by("mallory") == 0
    # half-open after 30 s: one probe at a time
    for i in range(3):
        assert s.submit(f"probe{i}", A, "mallory", 31.0) is None
    (probe,) = [t for t in drain(s, 31.0) if t.origin == A]
    assert s.finish(probe, Finish.UNREACHABLE, 32.0) is Drop.CIRCUIT_OPEN
    assert s.stats.circuit_trips == 2 and s.held_by("mallory") == 0  # queued ones dropped too
    assert s.submit("x", A, "mallory", 32.0 + 59.0) is Drop.CIRCUIT_OPEN  # open 60 s now
    assert s.submit("y", A, "mallory", 32.0 + 60.0) is None
    (probe,) = [t for t in drain(s, 92.0) if t.origin == A]
    assert s.finish(probe, Finish.DONE, 93.0) is None  # an answer closes it
    assert s.circuits_open(93.0) == 0
    for i in range(5):
        s.submit(f"z{i}", A, "mallory", 93.0)
    assert len([t for t in drain(s, 93.0) if t.origin == A]) == 5  # no probe limit


def test_http_errors_retry_but_do_not_trip() -> None:
    s = sched(breaker_failures=2, max_attempts=3, retry_base=1.0, retry_max=60.0)
    s.submit("m", A, "bob", 0.0)
    now = 0.0
    for attempt in range(3):
        t = s.next(now)
        assert t is not None and t.attempt == attempt and s.next(now) is None
        drop = s.finish(t, Finish.RETRY, now)
        if attempt < 2:
            assert drop is None
            deadline = s.next_deadline()
            assert deadline == now + 2.0**attempt  # rng 1.0: the top of the jitter range
            assert s.next(deadline - 0.001) is None
            now = deadline
        else:
            assert drop is Drop.ATTEMPTS
    assert s.stats.circuit_trips == 0 and s.stats.retried == 2
    assert s.held == 0 and s.next_deadline() is None
    s.submit("m", A, "bob", now)
    t = s.next(now)
    assert t is not None
    s.finish(t, Finish.RETRY, now, retry_after=7.0)
    assert s.next_deadline() == now + 7.0


def test_backoff_is_capped_jittered_and_honours_retry_after() -> None:
    for r in (0.0, 0.5, 1.0):
        s = PushScheduler[str](
            PushLimits(retry_base=1.0, retry_max=60.0), rng=itertools.repeat(r).__next__
        )
        for attempt in range(40):
            d = s.backoff(attempt, None)
            top = min(60.0, 2.0**attempt)
            assert 0.5 * top <= d <= top
        assert s.backoff(0, 5.0) == 5.0
        assert s.backoff(0, 500.0) == 60.0


def test_idle_breaker_state_is_bounded() -> None:
    s = sched(breaker_failures=2, max_attempts=1)
    for i in range(MAX_IDLE_ORIGINS + 10):
        s.submit("x", f"https://{i}.push", "o", 0.0)
        t = s.next(0.0)
        assert t is not None
        s.finish(t, Finish.UNREACHABLE, 0.0)  # one failure: remembered
    assert len(s._idle_origins) == MAX_IDLE_ORIGINS
    assert not s._origins and not s._rotation and s.held == 0


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        PushLimits(per_origin=0)
    with pytest.raises(ValueError):
        PushLimits(timeout=0)


def test_failing_origins_go_one_at_a_time_within_their_share() -> None:
    s = sched(concurrency=20, per_origin=5, per_owner=5, failing_concurrency=2,
              breaker_failures=10, max_attempts=9)  # fmt: skip
    dead = [f"https://dead{i}.push" for i in range(1000)]
    for i, origin in enumerate(dead):  # one unanswered attempt each: failing now
        s.submit("first", origin, f"m{i}", 0.0)
        t = s.next(0.0)
        assert t is not None and t.origin == origin
        s.finish(t, Finish.UNREACHABLE, 0.0)  # retried after 1 s
    for i, origin in enumerate(dead):
        for j in range(3):
            s.submit(f"more{j}", origin, f"m{i}", 0.0)
    for j in range(10):
        s.submit(f"h{j}", A, "bob", 0.0)
    started = drain(s, 0.0)
    failing = [t for t in started if t.origin != A]
    assert len(failing) == 2 and len({t.origin for t in failing}) == 2
    assert sum(t.origin == A for t in started) == 5  # a healthy origin keeps its full cap
    # the others wait out of the rotation: next() does not walk past them
    assert len(s._failing_wait) == 998 and len(s._rotation) <= 3
    # an answer makes an origin healthy (its full cap again) and frees a failing
    # slot, which the next waiting failing origin gets
    healed = failing[0].origin
    s.finish(failing[0], Finish.DONE, 1.0)
    again = drain(s, 1.0)
    assert sorted(t.item for t in again if t.origin == healed) == ["first", "more1", "more2"]
    assert not any(t.failing for t in again if t.origin == healed)
    others = [t for t in again if t.origin != healed]
    assert len(others) == 1 and others[0].failing and others[0].origin != A
    assert s.failing_in_flight == 2


def test_a_newer_push_with_the_same_key_replaces_a_queued_one() -> None:
    s = PushScheduler[str](
        PushLimits(concurrency=1, max_held_per_owner=3), merge=lambda old, new: old + "+" + new
    )
    assert s.submit("m1", A, "bob", 0.0, collapse="alice") is None
    t = s.next(0.0)
    assert t is not None and t.item == "m1"  # in flight: not replaced any more
    for item in ("m2", "m3", "m4"):
        assert s.submit(item, A, "bob", 0.0, collapse="alice") is None
    assert s.submit("c1", A, "bob", 0.0, collapse="carol") is None  # another key
    assert s.held == 3 and s.stats.collapsed == 2
    assert s.submit("x", A, "bob", 0.0) is Drop.OWNER_FULL  # no key: queued on its own
    # a retry of m1 falls due while the merged newer one is still queued: superseded
    assert s.finish(t, Finish.RETRY, 0.0) is None
    deadline = s.next_deadline()
    assert deadline is not None
    t = s.next(deadline)
    assert t is not None and t.item == "m2+m3+m4"
    assert s.stats.collapsed == 3 and s.held == 2
    s.finish(t, Finish.DONE, deadline)
    t = s.next(deadline)
    assert t is not None and t.item == "c1"
    s.finish(t, Finish.DONE, deadline)
    assert s.held == 0 and not s._collapsible
    # once sent, the key is free: the next one queues afresh
    assert s.submit("m5", A, "bob", deadline, collapse="alice") is None
    assert s.held == 1 and s.stats.collapsed == 3


def test_below_half_its_share_every_push_of_an_owner_is_kept() -> None:
    s = sched(concurrency=1, max_held_per_owner=8)
    for i in range(4):
        assert s.submit(f"m{i}", A, "bob", 0.0, collapse="alice") is None
    assert s.held == 4 and s.stats.collapsed == 0
    assert s.submit("m4", A, "bob", 0.0, collapse="alice") is None  # 4 of 8: collapses
    assert s.held == 4 and s.stats.collapsed == 1
    # m4 took the newest one's place (m3); the older ones go out in order
    sent = []
    while (t := s.next(0.0)) is not None:
        sent.append(t.item)
        s.finish(t, Finish.DONE, 0.0)
    assert sent == ["m0", "m1", "m2", "m4"] and not s._collapsible
