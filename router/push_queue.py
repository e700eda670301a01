"""Fair push scheduling: who is sent next, and who is dropped. No I/O, no clock.

The scheduler decides; an I/O layer (`router.push.PushQueue`, later the
notifier service) sends. It is generic over what a push is (`T`) and knows
each one only by two strings: the *origin* of its endpoint (scheme://host:port,
the party that may be slow or dead) and the *owner* (the recipient DID whose
registration it is, the party that may be hostile). Every method takes `now`
(monotonic seconds) from the caller, so tests drive it with a fake clock.

Rules:

- **Round-robin, two levels.** Origins with queued pushes take turns; within
  an origin, owners take turns; one owner's pushes to one origin go in order.
  A push service that has thousands queued does not delay one that has one.
- **Concurrency caps.** At most `concurrency` pushes in flight, at most
  `per_origin` to one origin and `per_owner` for one owner. A push that may not
  start now stays queued while others go first; nothing blocks a worker.
- **Failing origins go slow.** An origin whose last attempt went unanswered
  gets one push in flight at a time until it answers again, and all such
  origins together at most `failing_concurrency`, so origins that answer
  always keep the rest of the slots.
- **Circuit breaker per origin.** `breaker_failures` consecutive unreachable
  answers (timeout, connection refused/reset) open the circuit for
  `breaker_open` seconds, doubling each time it trips again, at most
  `breaker_open_max`. While open, the origin's queued and new pushes are
  dropped (counted, never waited for). After the period one probe is let
  through (half-open): an answer closes the circuit, a failure reopens it.
  Any HTTP answer, even 5xx, counts as reachable: those are retried with
  backoff but do not trip the breaker.
- **Bounded.** At most `max_held` pushes held (queued, in flight or waiting
  for a retry), and at most `max_held_per_owner` for one owner, so one DID
  cannot fill the queue for everyone. A push over either bound is dropped.
- **Collapsed under pressure.** Once an owner holds half its share, a push
  submitted with a `collapse` key replaces (`merge`) a queued push of the
  same origin, owner and key instead of queueing behind it, as RFC 8030's
  `Topic` does at the push service, and a retry falling due while a newer one
  is queued is superseded. So a backlog from one sender holds one push per
  device, not one per mail, and honest owners with many devices rarely
  reach their share. Below half, every push is sent.
- **Retries** (429/5xx/unreachable) wait on a timer outside the queues:
  exponential, jittered, capped, `Retry-After` honoured, at most
  `max_attempts` tries in all. A push the I/O layer refused to send
  (`Finish.REFUSED`: its endpoint is not at a public address) is dropped
  at once and leaves the origin's breaker as it was.

Costs: a held push is one `Ticket` (about 100 bytes) plus the caller's item;
an origin with pushes queued costs a dict entry and one deque per owner.
Origins whose breaker has state but nothing held are remembered in an LRU of
at most `MAX_IDLE_ORIGINS` entries (about 200 bytes each). An origin that
may not start anything is taken out of the rotation until that changes, so
`next()` walks past at most the owners at their cap (at most
concurrency / per_owner of them) and the origins where only such owners
have pushes queued.
"""

from __future__ import annotations

import enum
import heapq
import random
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_IDLE_ORIGINS = 4096


class Drop(enum.Enum):
    """Why a push was dropped (the metric label)."""

    QUEUE_FULL = "queue_full"  # max_held reached
    OWNER_FULL = "owner_full"  # the owner's share, max_held_per_owner, reached
    CIRCUIT_OPEN = "circuit_open"  # the origin's circuit is open
    ATTEMPTS = "attempts"  # out of attempts
    NOT_PUBLIC = "not_public"  # the endpoint is not at a public address (never sent)


class Finish(enum.Enum):
    """What became of one attempt, as far as scheduling cares."""

    DONE = "done"  # the origin answered; nothing more to do (sent, gone, other 4xx)
    RETRY = "retry"  # the origin answered 429/5xx: try again later
    UNREACHABLE = "unreachable"  # timeout or connection failure: try again, count a failure
    REFUSED = "refused"  # not sent: the endpoint may not be connected to; dropped, not retried


@dataclass(frozen=True, slots=True)
class PushLimits:
    """Every bound of the scheduler; `timeout` is for the I/O layer (per request)."""

    max_held: int = 10_000
    max_held_per_owner: int = 500
    concurrency: int = 64
    per_origin: int = 16
    per_owner: int = 4
    failing_concurrency: int = 16
    timeout: float = 10.0
    max_attempts: int = 5
    retry_base: float = 1.0
    retry_max: float = 60.0
    breaker_failures: int = 5
    breaker_open: float = 30.0
    breaker_open_max: float = 600.0

    def __post_init__(self) -> None:
        for name in (
            "max_held",
            "max_held_per_owner",
            "concurrency",
            "per_origin",
            "per_owner",
            "failing_concurrency",
            "max_attempts",
            "breaker_failures",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"push limit {name} must be at least 1")
        for name in ("timeout", "breaker_open", "breaker_open_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"push limit {name} must be positive")
        if self.retry_base < 0 or self.retry_max < 0:
            raise ValueError("push retry delays must not be negative")


@dataclass(eq=False, slots=True)
class Ticket(Generic[T]):
    """One held push. The I/O layer sends `item` and must then call `finish`."""

    item: T
    origin: str
    owner: str
    attempt: int = 0  # attempts already made before this one
    failing: bool = False  # counted against failing_concurrency while in flight
    collapse: Hashable | None = None

    @property
    def key(self) -> tuple[str, str, Hashable]:
        return (self.origin, self.owner, self.collapse)


@dataclass(slots=True)
class _Origin(Generic[T]):
    queues: OrderedDict[str, deque[Ticket[T]]] = field(default_factory=OrderedDict)
    in_flight: int = 0
    failures: int = 0  # consecutive unreachable answers
    trips: int = 0  # consecutive times the circuit opened
    open_until: float = 0.0  # open while now < open_until (trips > 0)

    def is_idle(self) -> bool:
        return not self.queues and self.in_flight == 0

    def is_plain(self) -> bool:
        return self.failures == 0 and self.trips == 0

    def at_cap(self, limits: PushLimits) -> bool:
        # failing or half-open: one at a time
        return self.in_flight >= (limits.per_origin if self.is_plain() else 1)


@dataclass
class SchedulerStats:
    retried: int = 0
    collapsed: int = 0
    circuit_trips: int = 0
    dropped: Counter[Drop] = field(default_factory=Counter)


class PushScheduler(Generic[T]):
    """Decides which push goes next. Drive it like this:

    - `submit(item, origin, owner, now)` for every new push; `None` means it
      is held, a `Drop` means it was dropped.
    - Whenever something changed (a submit, a finish, `next_deadline()`
      reached), call `next(now)` until it returns None and send each ticket.
    - For each ticket sent, call `finish(ticket, outcome, now)` exactly once.
    """

    def __init__(
        self,
        limits: PushLimits | None = None,
        *,
        rng: Callable[[], float] = random.random,
        merge: Callable[[T, T], T] | None = None,
    ) -> None:
        """`merge(queued, new)` is the item that replaces a queued one (default: `new`)."""
        self.limits = limits if limits is not None else PushLimits()
        self.stats = SchedulerStats()
        self._rng = rng
        self._merge = merge
        # The newest queued ticket per collapse key (older ones may be queued too)
        self._collapsible: dict[tuple[str, str, Hashable], Ticket[T]] = {}
        self._origins: dict[str, _Origin[T]] = {}
        self._idle_origins: OrderedDict[str, _Origin[T]] = OrderedDict()  # breaker state only
        # Origins with pushes queued take turns in `_rotation`. One that may not
        # start anything is parked (taken out) until that changes, so that
        # `next` never walks past many of them: at its own cap until one of
        # its pushes finishes; failing, while the failing share is used up, in
        # `_failing_wait` until the share has room again (oldest first).
        self._rotation: OrderedDict[str, None] = OrderedDict()
        self._failing_wait: OrderedDict[str, None] = OrderedDict()
        self._held_by: dict[str, int] = {}
        self._flight_by: dict[str, int] = {}
        self._timers: list[tuple[float, int, Ticket[T]]] = []
        self._seq = 0
        self.held = 0  # queued + in flight + waiting for a retry
        self.in_flight = 0
        self.failing_in_flight = 0

    # ------------------------------------------------------------ inputs

    def submit(
        self, item: T, origin: str, owner: str, now: float, collapse: Hashable | None = None
    ) -> Drop | None:
        """Hold a new push, or say why it was dropped.

        With a `collapse` key, while the owner holds half its share or more, a
        queued push of the same origin, owner and key takes the new one's place
        (merged) and nothing more is held.
        """
        lim = self.limits
        if collapse is not None and self._pressed(owner):
            queued = self._collapsible.get((origin, owner, collapse))
            if queued is not None:
                queued.item = item if self._merge is None else self._merge(queued.item, item)
                self.stats.collapsed += 1
                return None
        if self.held >= lim.max_held:
            return self._count(Drop.QUEUE_FULL)
        if self._held_by.get(owner, 0) >= lim.max_held_per_owner:
            return self._count(Drop.OWNER_FULL)
        if self._is_open(self._peek(origin), now):
            return self._count(Drop.CIRCUIT_OPEN)
        self.held += 1
        self._held_by[owner] = self._held_by.get(owner, 0) + 1
        self._enqueue(Ticket(item, origin, owner, collapse=collapse))
        return None

    def next(self, now: float) -> Ticket[T] | None:
        """The next push to send now, marked in flight; None when none may start."""
        self._fire_timers(now)
        lim = self.limits
        if self.in_flight >= lim.concurrency:
            return None
        room = lim.failing_concurrency - self.failing_in_flight
        while room > 0 and self._failing_wait:
            waiting, _ = self._failing_wait.popitem(last=False)
            self._rotation[waiting] = None
            room -= 1
        for _ in range(len(self._rotation)):
            name = next(iter(self._rotation))
            self._rotation.move_to_end(name)
            o = self._origins[name]
            if o.at_cap(lim):
                del self._rotation[name]
                continue
            if not o.is_plain() and self.failing_in_flight >= lim.failing_concurrency:
                del self._rotation[name]
                self._failing_wait[name] = None
                continue
            for _ in range(len(o.queues)):
                owner, queue = next(iter(o.queues.items()))
                o.queues.move_to_end(owner)
                if self._flight_by.get(owner, 0) >= lim.per_owner:
                    continue
                ticket = queue.popleft()
                self._unindex(ticket)
                if not queue:
                    del o.queues[owner]
                    if not o.queues:
                        del self._rotation[name]
                o.in_flight += 1
                self.in_flight += 1
                ticket.failing = not o.is_plain()
                self.failing_in_flight += ticket.failing
                self._flight_by[owner] = self._flight_by.get(owner, 0) + 1
                return ticket
        return None

    def finish(
        self, ticket: Ticket[T], outcome: Finish, now: float, retry_after: float | None = None
    ) -> Drop | None:
        """Record what became of a ticket from `next`; a `Drop` if it is given up for good."""
        o = self._origins[ticket.origin]
        o.in_flight -= 1
        self.in_flight -= 1
        if ticket.failing:
            self.failing_in_flight -= 1
            ticket.failing = False
        left = self._flight_by[ticket.owner] - 1
        if left:
            self._flight_by[ticket.owner] = left
        else:
            del self._flight_by[ticket.owner]
        if outcome is Finish.UNREACHABLE:
            self._failed(ticket.origin, o, now)
        elif outcome is not Finish.REFUSED:  # refused: the origin was never asked
            o.failures = 0
            o.trips = 0
        drop: Drop | None = None
        if outcome is Finish.DONE:
            self._release(ticket)
        elif outcome is Finish.REFUSED:
            drop = self._give_up(ticket, Drop.NOT_PUBLIC)
        elif self._is_open(o, now):
            drop = self._give_up(ticket, Drop.CIRCUIT_OPEN)
        elif ticket.attempt + 1 >= self.limits.max_attempts:
            drop = self._give_up(ticket, Drop.ATTEMPTS)
        else:
            self.stats.retried += 1
            due = now + self.backoff(ticket.attempt, retry_after)
            ticket.attempt += 1
            self._seq += 1
            heapq.heappush(self._timers, (due, self._seq, ticket))
        if o.queues and ticket.origin not in self._failing_wait:
            self._rotation[ticket.origin] = None  # unparked (no-op when it was not)
        self._maybe_forget(ticket.origin)
        return drop

    # ------------------------------------------------------------ queries

    def next_deadline(self) -> float | None:
        """When a retry falls due (call `next` then), or None."""
        return self._timers[0][0] if self._timers else None

    def held_by(self, owner: str) -> int:
        return self._held_by.get(owner, 0)

    def circuits_open(self, now: float) -> int:
        """Origins whose circuit is open at `now` (for a gauge)."""
        origins = list(self._origins.values()) + list(self._idle_origins.values())
        return sum(1 for o in origins if self._is_open(o, now))

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry number `attempt + 1`: exponential, jittered, capped."""
        lim = self.limits
        if retry_after is not None:
            return min(lim.retry_max, max(0.0, retry_after))
        base = min(lim.retry_max, lim.retry_base * float(2 ** min(attempt, 32)))
        return base * (0.5 + 0.5 * self._rng())

    # ------------------------------------------------------------ internals

    def _pressed(self, owner: str) -> bool:
        return 2 * self._held_by.get(owner, 0) >= self.limits.max_held_per_owner

    def _unindex(self, ticket: Ticket[T]) -> None:
        if ticket.collapse is not None and self._collapsible.get(ticket.key) is ticket:
            del self._collapsible[ticket.key]

    def _count(self, reason: Drop) -> Drop:
        self.stats.dropped[reason] += 1
        return reason

    def _peek(self, origin: str) -> _Origin[T] | None:
        return self._origins.get(origin) or self._idle_origins.get(origin)

    def _is_open(self, o: _Origin[T] | None, now: float) -> bool:
        return o is not None and o.trips > 0 and now < o.open_until

    def _enqueue(self, ticket: Ticket[T]) -> None:
        o = self._origins.get(ticket.origin)
        if o is None:
            o = self._idle_origins.pop(ticket.origin, None) or _Origin()
            self._origins[ticket.origin] = o
        queue = o.queues.get(ticket.owner)
        if queue is None:
            queue = o.queues[ticket.owner] = deque()
        queue.append(ticket)
        if ticket.collapse is not None:
            self._collapsible[ticket.key] = ticket
        if ticket.origin not in self._rotation and ticket.origin not in self._failing_wait:
            self._rotation[ticket.origin] = None

    def _release(self, ticket: Ticket[T]) -> None:
        self.held -= 1
        left = self._held_by[ticket.owner] - 1
        if left:
            self._held_by[ticket.owner] = left
        else:
            del self._held_by[ticket.owner]

    def _give_up(self, ticket: Ticket[T], reason: Drop) -> Drop:
        self._release(ticket)
        return self._count(reason)

    def _failed(self, name: str, o: _Origin[T], now: float) -> None:
        lim = self.limits
        if self._is_open(o, now):
            return  # answers of requests sent before it opened
        o.failures += 1
        if o.trips == 0 and o.failures < lim.breaker_failures:
            return
        # closed and at the threshold, or a half-open probe failed: (re)open
        period = min(lim.breaker_open_max, lim.breaker_open * float(2 ** min(o.trips, 32)))
        o.trips += 1
        o.failures = 0
        o.open_until = now + period
        self.stats.circuit_trips += 1
        for queue in o.queues.values():
            for ticket in queue:
                self._unindex(ticket)
                self._give_up(ticket, Drop.CIRCUIT_OPEN)
        o.queues.clear()
        self._rotation.pop(name, None)
        self._failing_wait.pop(name, None)

    def _fire_timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, _, ticket = heapq.heappop(self._timers)
            if self._is_open(self._peek(ticket.origin), now):
                self._give_up(ticket, Drop.CIRCUIT_OPEN)
            elif (
                ticket.collapse is not None
                and ticket.key in self._collapsible
                and self._pressed(ticket.owner)
            ):
                self._release(ticket)  # superseded by a newer push, queued
                self.stats.collapsed += 1
            else:
                self._enqueue(ticket)

    def _maybe_forget(self, name: str) -> None:
        o = self._origins[name]
        if not o.is_idle():
            return
        del self._origins[name]
        if o.is_plain():
            return
        self._idle_origins[name] = o
        while len(self._idle_origins) > MAX_IDLE_ORIGINS:
            self._idle_origins.popitem(last=False)
