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
from collections.abc import Iterable, Iterator

from .chunk import Change
from .errors import AutomergeError


class ChangeGraph:
    """Hashes, dependencies, heads and per-actor clock of a set of changes."""

    def __init__(self) -> None:
        self._history: list[Change] = []
        self._deps_idx: list[tuple[int, ...]] = []
        self._index: dict[bytes, int] = {}
        self._heads: set[bytes] = set()
        self._clock: dict[bytes, int] = {}
        self._seq_owner: dict[tuple[bytes, int], bytes] = {}
        self._queue: dict[bytes, Change] = {}
        self._waiting: dict[bytes, list[bytes]] = {}
        self._missing_count: dict[bytes, int] = {}

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
        """Highest applied ``seq`` per actor id (a copy)."""
        return dict(self._clock)

    @property
    def queued(self) -> int:
        """Number of changes waiting for missing dependencies."""
        return len(self._queue)

    def missing_deps(self, heads: Iterable[bytes] = ()) -> list[bytes]:
        """Sorted hashes that queued changes (or ``heads``) need and nobody has given us."""
        missing = {h for h in self._waiting if h not in self._queue}
        missing.update(h for h in heads if h not in self._index and h not in self._queue)
        return sorted(missing)

    # -- adding --------------------------------------------------------------

    def check(self, change: Change) -> None:
        """Raise :class:`AutomergeError` if ``change`` conflicts with what we hold."""
        owner = self._seq_owner.get((change.actor, change.seq))
        if owner is not None and owner != change.hash:
            raise AutomergeError(
                f"actor {change.actor.hex()} already has a different change with seq {change.seq}"
            )

    def add(self, change: Change) -> list[bytes]:
        """Add one change; return the hashes newly applied (this one and released orphans).

        Returns ``[]`` for a duplicate or when the change has to wait in the queue.
        Call :meth:`check` first if the caller wants all-or-nothing batches.
        """
        h = change.hash
        if h in self._index or h in self._queue:
            return []
        self.check(change)
        self._seq_owner[(change.actor, change.seq)] = h
        missing = [d for d in set(change.deps) if d not in self._index]
        if missing:
            self._queue[h] = change
            self._missing_count[h] = len(missing)
            for d in missing:
                self._waiting.setdefault(d, []).append(h)
            return []
        applied: list[bytes] = []
        stack = [change]
        while stack:
            c = stack.pop()
            self._apply(c)
            applied.append(c.hash)
            for waiter in self._waiting.pop(c.hash, ()):
                left = self._missing_count[waiter] - 1
                if left:
                    self._missing_count[waiter] = left
                else:
                    del self._missing_count[waiter]
                    stack.append(self._queue.pop(waiter))
        return applied

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
        if self._clock.get(change.actor, 0) < change.seq:
            self._clock[change.actor] = change.seq

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
