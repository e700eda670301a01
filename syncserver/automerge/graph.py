"""The change graph of one document: no operations are interpreted, only hashes and deps.

Changes may arrive in any order. A change whose dependencies are all present is
*applied*: it gets the next position in ``history`` (so history is always a causal,
topological order) and the heads move. Otherwise it waits in a queue until its
dependencies arrive; :meth:`ChangeGraph.missing_deps` names what is absent.

Costs: memory is one :class:`Change` (its raw bytes plus ~300 bytes of Python
objects) per change. Adding a change costs O(deps). :meth:`ChangeGraph.since` and
:meth:`ChangeGraph.ancestors_among` walk backwards from the heads in descending
history position and stop as soon as the answer is known, so their cost follows the
part of the graph between the two sets of heads, not the whole history (except
``since([])``, which is everything by definition).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain

from .chunk import Change
from .errors import AutomergeError, QueueFullError


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """Bounds on the changes that may wait for missing dependencies (None: unbounded).

    ``changes``/``bytes`` bound the whole queue; the ``_per_source`` ones the part
    charged to one ``source`` of :meth:`ChangeGraph.add_batch` (e.g. a writer), so one
    source cannot fill the queue for the others. A batch that would exceed any of
    them raises :class:`QueueFullError` and changes nothing.
    """

    changes: int | None = None
    bytes: int | None = None
    changes_per_source: int | None = None
    bytes_per_source: int | None = None

    def bounded(self) -> bool:
        return any(
            x is not None
            for x in (self.changes, self.bytes, self.changes_per_source, self.bytes_per_source)
        )


def _refuse_over(
    count: int, size: int, max_count: int | None, max_bytes: int | None, *, yours: bool
) -> None:
    """Raise QueueFullError if `count` changes / `size` bytes would exceed a bound."""
    your, per = (" your", " per writer") if yours else ("", "")
    if max_count is not None and count > max_count:
        raise QueueFullError(
            f"{count}{' of' + your if yours else ''} changes would wait for missing"
            f" dependencies; at most {max_count} may{per}"
        )
    if max_bytes is not None and size > max_bytes:
        raise QueueFullError(
            f"{size} bytes of{your} changes would wait for missing dependencies;"
            f" at most {max_bytes} may{per}"
        )


class ChangeGraph:
    """Hashes, dependencies, heads and per-actor clock of a set of changes."""

    def __init__(self, *, limits: QueueLimits = QueueLimits()) -> None:  # noqa: B008
        self.limits = limits
        self._queued_bytes = 0
        # Queued changes charged to a source, and the other sources that sent them too.
        self._owner: dict[bytes, Hashable] = {}
        self._also_from: dict[bytes, list[Hashable]] = {}
        self._source_count: dict[Hashable, int] = {}
        self._source_bytes: dict[Hashable, int] = {}
        self._missing: set[bytes] | None = None  # cache of the queue's missing deps
        self._history: list[Change] = []
        self._deps_idx: list[tuple[int, ...]] = []
        self._index: dict[bytes, int] = {}
        self._heads: set[bytes] = set()
        self._by_actor: dict[bytes, list[bytes]] = {}  # hashes by seq - 1
        self._queued_seq: dict[tuple[bytes, int], bytes] = {}
        self._queue: dict[bytes, Change] = {}
        self._waiting: dict[bytes, list[bytes]] = {}
        self._missing_count: dict[bytes, int] = {}
        #: Queued changes dropped because they broke the seq rule when released.
        self.dropped = 0

    # -- reading -------------------------------------------------------------

    @property
    def heads(self) -> list[bytes]:
        """Sorted hashes of the applied changes that no other applied change depends on."""
        return sorted(self._heads)

    def __len__(self) -> int:
        """Number of applied changes (queued ones are not counted)."""
        return len(self._history)

    def __contains__(self, change_hash: object) -> bool:
        return change_hash in self._index

    def has(self, change_hash: bytes) -> bool:
        """True if the change is applied (not merely queued)."""
        return change_hash in self._index

    def get_change(self, change_hash: bytes) -> Change | None:
        i = self._index.get(change_hash)
        return None if i is None else self._history[i]

    def changes(self) -> Iterator[Change]:
        """Applied changes in causal order (each after all of its dependencies)."""
        return iter(self._history)

    @property
    def clock(self) -> dict[bytes, int]:
        """Highest applied ``seq`` per actor id (seqs are contiguous from 1)."""
        return {actor: len(hashes) for actor, hashes in self._by_actor.items()}

    @property
    def queued(self) -> int:
        """Number of changes waiting for missing dependencies."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Raw bytes of the changes waiting for missing dependencies."""
        return self._queued_bytes

    def missing_deps(self, heads: Iterable[bytes] = ()) -> list[bytes]:
        """Sorted hashes that queued changes (or ``heads``) need and nobody has given us.

        The queue's part is computed once per change to the queue, so calling this on
        every sync round costs the ``heads`` given, not the queue.
        """
        queue = self._queue
        if self._missing is None:
            self._missing = {
                h
                for h, waiters in self._waiting.items()
                if h not in queue and any(w in queue for w in waiters)
            }
        missing = set(self._missing)
        missing.update(h for h in heads if h not in self._index and h not in queue)
        return sorted(missing)

    # -- adding --------------------------------------------------------------

    def add(self, change: Change) -> list[bytes]:
        """Add one change; see :meth:`add_batch`."""
        return self.add_batch([change])

    def queued_from(self, source: Hashable) -> tuple[int, int]:
        """(count, raw bytes) of queued changes charged to ``source``."""
        return self._source_count.get(source, 0), self._source_bytes.get(source, 0)

    def add_batch(self, changes: Iterable[Change], source: Hashable | None = None) -> list[bytes]:
        """Add changes in any order; return the hashes newly applied, in causal order.

        Changes whose dependencies are absent are queued and reported by the call
        that finally applies them. All or nothing: raises :class:`AutomergeError`
        and changes nothing if one of ``changes`` has the actor and seq of a
        different change, or is ready to apply but does not carry its actor's next
        seq (JS refuses such documents, so we never store them). A change queued by
        an earlier call that turns out to break that rule when released is dropped,
        together with the queued changes that depend on it.

        Changes queued by a call with a ``source`` are charged to it (against the
        per-source limits) until they are applied or :meth:`drop_source` runs.
        """
        index, queue = self._index, self._queue
        new: dict[bytes, Change] = {}
        batch_seq: dict[tuple[bytes, int], bytes] = {}
        resent: list[bytes] = []
        for c in changes:
            if c.hash in queue and source is not None:
                resent.append(c.hash)
            if c.hash in index or c.hash in queue or c.hash in new:
                continue
            self._check_seq(c, batch_seq)
            new[c.hash] = c

        # Plan first (no mutation), so a bad change rejects the whole batch. Input
        # order is kept where dependencies allow, so load(save()) is stable.
        clock: dict[bytes, int] = {}
        counts: dict[bytes, int] = {}
        sim_waiting: dict[bytes, list[bytes]] = {}
        planned: set[bytes] = set()
        order: list[Change] = []
        evicted: list[bytes] = []
        for first in new.values():
            missing = {d for d in first.deps if d not in index and d not in planned}
            if missing:
                counts[first.hash] = len(missing)
                for d in missing:
                    sim_waiting.setdefault(d, []).append(first.hash)
                continue
            ready = [first]
            while ready:
                c = ready.pop()
                have = clock.get(c.actor)
                if have is None:
                    have = len(self._by_actor.get(c.actor, ()))
                if c.seq != have + 1:
                    if c.hash in new:
                        raise AutomergeError(
                            f"change {c.hash.hex()} by actor {c.actor.hex()} has seq {c.seq}, "
                            f"expected {have + 1}"
                        )
                    evicted.append(c.hash)
                    continue
                clock[c.actor] = c.seq
                order.append(c)
                planned.add(c.hash)
                for w in chain(self._waiting.get(c.hash, ()), sim_waiting.get(c.hash, ())):
                    if w in counts:
                        left = counts[w] - 1
                    elif w in self._missing_count:
                        left = self._missing_count[w] - 1
                    else:
                        continue  # a stale entry for a dropped change
                    counts[w] = left
                    if left == 0:
                        ready.append(new[w] if w in new else queue[w])

        applied = {c.hash for c in order}
        to_queue = [c for c in new.values() if c.hash not in applied]
        limits = self.limits
        if to_queue and limits.bounded():
            released = [c for c in order if c.hash in queue]
            count = len(queue) - len(released) + len(to_queue)
            size = (
                self._queued_bytes
                - sum(len(c.raw) for c in released)
                + sum(len(c.raw) for c in to_queue)
            )
            _refuse_over(count, size, limits.changes, limits.bytes, yours=False)
            if source is not None:
                mine = [c for c in released if self._owner.get(c.hash) == source]
                count = self._source_count.get(source, 0) - len(mine) + len(to_queue)
                size = (
                    self._source_bytes.get(source, 0)
                    - sum(len(c.raw) for c in mine)
                    + sum(len(c.raw) for c in to_queue)
                )
                _refuse_over(
                    count, size, limits.changes_per_source, limits.bytes_per_source, yours=True
                )

        # Commit.
        # Applying a change someone waits for, or queueing one, changes what is missing.
        if to_queue or any(c.hash in self._waiting for c in order):
            self._missing = None
        for h in resent:
            if h in queue and self._owner.get(h) != source:
                others = self._also_from.setdefault(h, [])
                if source not in others:
                    others.append(source)
        for c in order:
            if queue.pop(c.hash, None) is not None:
                self._queued_bytes -= len(c.raw)
                self._missing_count.pop(c.hash, None)
                self._queued_seq.pop((c.actor, c.seq), None)
                self._uncharge(c)
            self._apply(c)
            self._waiting.pop(c.hash, None)
        for w, left in counts.items():
            if w in queue:
                self._missing_count[w] = left
        for c in to_queue:
            missing = {d for d in c.deps if d not in index}
            queue[c.hash] = c
            self._queued_bytes += len(c.raw)
            self._missing_count[c.hash] = len(missing)
            self._queued_seq[(c.actor, c.seq)] = c.hash
            for d in missing:
                self._waiting.setdefault(d, []).append(c.hash)
            if source is not None:
                self._charge(c, source)
        for h in evicted:
            self._drop(h)
        return [c.hash for c in order]

    def _charge(self, c: Change, source: Hashable) -> None:
        self._owner[c.hash] = source
        self._source_count[source] = self._source_count.get(source, 0) + 1
        self._source_bytes[source] = self._source_bytes.get(source, 0) + len(c.raw)

    def _uncharge(self, c: Change) -> Hashable | None:
        """Stop charging a change that leaves the queue to its source; return it."""
        self._also_from.pop(c.hash, None)
        source = self._owner.pop(c.hash, None)
        if source is not None:
            left = self._source_count[source] - 1
            if left:
                self._source_count[source] = left
                self._source_bytes[source] -= len(c.raw)
            else:
                del self._source_count[source]
                del self._source_bytes[source]
        return source

    def drop_source(self, source: Hashable) -> int:
        """Forget ``source`` (e.g. a peer that left): each queued change charged to it
        is charged to another source that sent it too, or else dropped. Queued changes
        of other sources that depend on a dropped one keep waiting (for it to be sent
        again). Returns the number of changes dropped."""
        dropped = 0
        for h, owner in list(self._owner.items()):
            others = self._also_from.get(h)
            if others is not None and source in others:
                others.remove(source)
            if owner != source:
                continue
            c = self._queue[h]
            self._uncharge(c)
            if others:
                self._charge(c, others.pop(0))
                if others:
                    self._also_from[h] = others
                continue
            del self._queue[h]
            self._missing = None
            self._queued_bytes -= len(c.raw)
            for d in c.deps:
                waiters = self._waiting.get(d)
                if waiters is not None and h in waiters:
                    waiters.remove(h)
                    if not waiters:
                        del self._waiting[d]
            self._missing_count.pop(h, None)
            self._queued_seq.pop((c.actor, c.seq), None)
            dropped += 1
        return dropped

    def _check_seq(self, c: Change, batch_seq: dict[tuple[bytes, int], bytes]) -> None:
        if c.seq == 0:
            raise AutomergeError(f"change {c.hash.hex()} has seq 0")
        held = self._by_actor.get(c.actor)
        other = None
        if held is not None and c.seq <= len(held):
            other = held[c.seq - 1]
        other = other or self._queued_seq.get((c.actor, c.seq))
        other = other or batch_seq.setdefault((c.actor, c.seq), c.hash)
        if other != c.hash:
            raise AutomergeError(
                f"actor {c.actor.hex()} already has a different change with seq {c.seq}"
            )

    def _drop(self, h: bytes) -> None:
        stack = [h]
        while stack:
            c = self._queue.pop(stack.pop(), None)
            if c is None:
                continue
            self._missing = None
            self._queued_bytes -= len(c.raw)
            self._uncharge(c)
            for d in c.deps:
                # Forget the dropped change as a waiter, or its entries outlive it.
                waiters = self._waiting.get(d)
                if waiters is not None and c.hash in waiters:
                    waiters.remove(c.hash)
                    if not waiters:
                        del self._waiting[d]
            self._missing_count.pop(c.hash, None)
            self._queued_seq.pop((c.actor, c.seq), None)
            stack.extend(self._waiting.pop(c.hash, ()))
        self.dropped += 1

    def _apply(self, change: Change) -> None:
        i = len(self._history)
        index = self._index
        self._history.append(change)
        self._deps_idx.append(tuple(index[d] for d in change.deps))
        index[change.hash] = i
        heads = self._heads
        for d in change.deps:
            heads.discard(d)
        heads.add(change.hash)
        self._by_actor.setdefault(change.actor, []).append(change.hash)

    # -- graph queries -------------------------------------------------------

    def since(self, heads: Iterable[bytes]) -> list[Change]:
        """Applied changes that are not ancestors of (or equal to) ``heads``, causal order.

        Unknown hashes in ``heads`` are ignored; ``since([])`` is the whole history.
        """
        index = self._index
        known = {index[h] for h in heads if h in index}
        if not known:
            return list(self._history)
        ours, theirs = 1, 2
        flag: dict[int, int] = {}
        heap: list[int] = []
        for i in known:
            flag[i] = theirs
            heap.append(-i)
        pending = 0
        for h in self._heads:
            i = index[h]
            if i not in flag:
                flag[i] = ours
                heap.append(-i)
                pending += 1
        heapq.heapify(heap)
        found: list[int] = []
        deps_idx = self._deps_idx
        while pending and heap:
            i = -heapq.heappop(heap)
            f = flag[i]
            if f == ours:
                pending -= 1
                found.append(i)
            for d in deps_idx[i]:
                old = flag.get(d)
                if old is None:
                    flag[d] = f
                    heapq.heappush(heap, -d)
                    if f == ours:
                        pending += 1
                elif old == ours and f == theirs:
                    flag[d] = theirs
                    pending -= 1
        found.reverse()
        return [self._history[i] for i in found]

    def ancestors_among(self, heads: Iterable[bytes], candidates: Iterable[bytes]) -> set[bytes]:
        """The ``candidates`` that are ``heads`` or ancestors of them.

        Walks back from ``heads`` only as far as the oldest candidate.
        """
        index = self._index
        wanted = {index[c] for c in candidates if c in index}
        start = {index[h] for h in heads if h in index}
        if not wanted or not start:
            return set()
        floor = min(wanted)
        heap = [-i for i in start]
        heapq.heapify(heap)
        seen = set(start)
        hits: set[int] = set()
        deps_idx = self._deps_idx
        while heap and len(hits) < len(wanted):
            i = -heapq.heappop(heap)
            if i < floor:
                break
            if i in wanted:
                hits.add(i)
            for d in deps_idx[i]:
                if d not in seen and d >= floor:
                    seen.add(d)
                    heapq.heappush(heap, -d)
        return {self._history[i].hash for i in hits}
