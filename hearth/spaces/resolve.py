"""Resolution: a set of ops -> one `SpaceState`, the same whatever order they came in.

The rule (docs/spaces.md, "Resolution"): walk the op graph from `create` in
topological order; whenever several ops are ready (all their parents walked),
take the one with the smallest key

    (-(author's rank in the op's causal past), causal depth, op id)

and apply it with `rules.apply`. "Rank in the causal past" is the author's
rank after the last accepted rank change of theirs (in walk order) that is an
ancestor of the op; it is known the moment the op becomes ready, since all its
ancestors have been walked by then. Ops whose parents never arrive are
rejected `unknown-parent`; an op whose time is before a parent's, `clock`.
When an accepted op lowers someone's rank, their accepted ops that relied on more
and that the op's author had not seen are revoked: once the walk is done, it
starts over with every op so found excluded, until a walk finds none
(`_settle`).

Costs: O(n log n) heap work for n ops, plus one big-integer OR per parent
edge over a bitset of the accepted ops (one bit each; bitsets are dropped once
every child of an op is ready and it is no head), plus one walk per round of
revocation (usually none). Adding an op that
names every current head as a parent continues the walk where it stopped
(O(1) amortised, the usual case: one writer extending the log); anything
else re-runs the walk once, lazily, on the next `state` read.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from hearth.spaces.ops import Create, Op, OpId, Rank
from hearth.spaces.rules import apply, relied_rank
from hearth.spaces.state import SpaceState
from hearth.types import Did


@dataclass(slots=True)
class _Walk:
    """One run of the walk: everything derived from the ops, rebuilt on a re-run."""

    state: SpaceState
    heap: list[tuple[int, int, OpId]] = field(default_factory=list)
    walked: set[OpId] = field(default_factory=set)
    missing: dict[OpId, int] = field(default_factory=dict)  # op -> parents not walked yet
    depth: dict[OpId, int] = field(default_factory=dict)
    past: dict[OpId, Rank] = field(default_factory=dict)  # author's causal-past rank
    anc: dict[OpId, int] = field(default_factory=dict)  # bitset of rank changes in the past
    unready_children: dict[OpId, int] = field(default_factory=dict)
    bit: dict[OpId, int] = field(default_factory=dict)  # ops that changed a rank
    history: dict[Did, list[tuple[int, Rank]]] = field(default_factory=dict)
    # accepted ops that relied on a rank, by author: (bit, rank relied on, op id)
    acts: dict[Did, list[tuple[int, Rank, OpId]]] = field(default_factory=dict)
    heads: set[OpId] = field(default_factory=set)
    next_bit: int = 0
    excluded: frozenset[OpId] = frozenset()  # revoked: rejected without a look
    revoked: set[OpId] = field(default_factory=set)  # found by this walk: for the next round


class Resolver:
    """Holds a space's verified ops and resolves them. Not thread-safe.

    The caller must only `add` ops whose signature it has verified
    (`signing.verify_op`) and whose `space` is this space; `log.AuthorityLog`
    does both.
    """

    def __init__(self, space: OpId) -> None:
        self.space = space
        self.ops: dict[OpId, Op] = {}
        self._children: dict[OpId, list[OpId]] = {}
        self._walk: _Walk | None = None

    def __len__(self) -> int:
        return len(self.ops)

    def __contains__(self, op_id: object) -> bool:
        return op_id in self.ops

    def add(self, op_id: OpId, op: Op) -> None:
        """Add one op (a no-op if known). The state follows on the next `state` read."""
        if op_id in self.ops:
            return
        self.ops[op_id] = op
        for p in op.parents:
            self._children.setdefault(p, []).append(op_id)
        walk = self._walk
        if walk is None or walk.heap:
            self._walk = None
            return
        walked = [p for p in op.parents if p in walk.walked]
        if len(walked) < len(op.parents) and all(p in walk.anc for p in walked):
            # It waits for a parent; the walk reaches it when that parent comes.
            for p in walked:
                walk.unready_children[p] += 1
            walk.state.rejected[op_id] = "unknown-parent"
        elif walk.heads and walk.heads == set(op.parents):
            # It follows everything walked so far: the walk just goes on.
            for p in walked:
                walk.unready_children[p] += 1
            self._enter(walk, op_id)
            self._run(walk)
            if walk.revoked:
                self._walk = None
        else:
            self._walk = None

    def add_all(self, ops: Iterable[tuple[OpId, Op]]) -> None:
        for op_id, op in ops:
            self.add(op_id, op)

    @property
    def state(self) -> SpaceState:
        """The resolved state; read-only, and valid only until the next `add`."""
        walk = self._walk
        if walk is None:
            walk = self._walk = self._settle()
        return walk.state

    @property
    def heads(self) -> list[OpId]:
        """The walked ops nothing walked follows (sorted): the parents for a new op."""
        self.state  # noqa: B018 - brings the walk up to date
        assert self._walk is not None
        return sorted(self._walk.heads)

    def children(self, op_id: OpId) -> list[OpId]:
        """The ops here that name `op_id` as a parent."""
        return list(self._children.get(op_id, ()))

    def unknown_parents(self) -> set[OpId]:
        """Op ids that ops name as parents but that are not here."""
        return {p for p in self._children if p not in self.ops}

    # --- the walk ------------------------------------------------------------

    def _settle(self) -> _Walk:
        """Walk until no accepted op is revoked by a concurrent demotion (see _revoke)."""
        excluded: frozenset[OpId] = frozenset()
        while True:
            walk = self._fresh_walk(excluded)
            self._run(walk)
            if not walk.revoked:
                break
            # Each round excludes at least one more op (those found were accepted in it):
            # at most n rounds; usually none, and one per link of a chain of revocations.
            excluded = excluded.union(walk.revoked)
        # Everything not walked waits for a parent that is not here (or for create).
        for op_id in self.ops.keys() - walk.walked:
            walk.state.rejected[op_id] = "unknown-parent"
        return walk

    def _fresh_walk(self, excluded: frozenset[OpId]) -> _Walk:
        walk = _Walk(SpaceState(self.space), excluded=excluded)
        root = self.ops.get(self.space)
        if root is not None and isinstance(root.body, Create):
            self._enter(walk, self.space)
        return walk

    def _enter(self, walk: _Walk, op_id: OpId) -> None:
        """`op_id` became ready: compute its causal-past facts and queue it."""
        op = self.ops[op_id]
        anc = 0
        depth = 0
        for p in op.parents:
            anc |= walk.anc[p]
            b = walk.bit.get(p)
            if b is not None:
                anc |= 1 << b
            depth = max(depth, walk.depth[p] + 1)
            left = walk.unready_children[p] = walk.unready_children[p] - 1
            if left == 0 and p not in walk.heads:
                _drop(walk, p)
        past = Rank.NONE
        for b, rank in reversed(walk.history.get(op.author, ())):
            if anc >> b & 1:
                past = rank
                break
        walk.anc[op_id] = anc
        walk.unready_children[op_id] = len(self._children.get(op_id, ()))
        walk.depth[op_id] = depth
        walk.past[op_id] = past
        heapq.heappush(walk.heap, (-past, depth, op_id))

    def _run(self, walk: _Walk) -> None:
        state = walk.state
        rejected = state.rejected
        changes: list[tuple[Did, Rank]] = []

        def on_rank(did: Did, rank: Rank) -> None:
            changes.append((did, rank))

        while walk.heap:
            _, _, op_id = heapq.heappop(walk.heap)
            op = self.ops[op_id]
            past = walk.past.pop(op_id)
            walk.walked.add(op_id)
            for p in op.parents:
                walk.heads.discard(p)
                if walk.unready_children.get(p) == 0:
                    _drop(walk, p)
            walk.heads.add(op_id)
            rejected.pop(op_id, None)  # it may have waited for a parent until now
            changes.clear()
            why: str | None
            relied = Rank.NONE
            if op_id in walk.excluded:
                why = "revoked"
            elif op.space != self.space and op_id != self.space:
                why = "wrong-space"
            elif op.parents and op.time < max(self.ops[p].time for p in op.parents):
                why = "clock"
            else:
                relied = relied_rank(state, op)
                why = apply(state, op_id, op, past, on_rank)
            if why is not None:
                rejected[op_id] = why
            else:
                state.accepted += 1
                b = walk.bit[op_id] = walk.next_bit
                walk.next_bit += 1
                for did, rank in changes:
                    walk.history.setdefault(did, []).append((b, rank))
                    if did != op.author:
                        self._revoke(walk, op_id, did, rank)
                if relied > Rank.NONE:
                    walk.acts.setdefault(op.author, []).append((b, relied, op_id))
            for child in self._children.get(op_id, ()):
                if child not in self.ops:
                    continue
                left = walk.missing.get(child)
                if left is None:  # first parent walked: count those still to come
                    cps = self.ops[child].parents
                    left = 0 if len(cps) == 1 else sum(p not in walk.walked for p in cps)
                else:
                    left -= 1
                if left:
                    walk.missing[child] = left
                else:
                    walk.missing.pop(child, None)
                    self._enter(walk, child)

    def _revoke(self, walk: _Walk, by: OpId, did: Did, rank: Rank) -> None:
        """`by` brought `did` down to `rank`: `did`'s accepted ops that relied on more and
        that `by`'s author had not seen (concurrent with `by`) are revoked."""
        seen = walk.anc[by]
        for b, need, op_id in walk.acts.get(did, ()):
            if need > rank and not seen >> b & 1:
                walk.revoked.add(op_id)


def _drop(walk: _Walk, op_id: OpId) -> None:
    """Nobody needs `op_id`'s bitset again: all its children are ready, and it is no head."""
    walk.anc.pop(op_id, None)
    walk.unready_children.pop(op_id, None)
