"""A slow, obviously-correct resolution (explicit ancestor sets, no incremental
walk, no bitsets, a fresh walk per revocation round) that the property tests hold
`resolve.Resolver` against."""

from __future__ import annotations

from hearth.spaces.ops import Create, Op, OpId, Rank
from hearth.spaces.rules import apply, relied_rank
from hearth.spaces.state import SpaceState
from hearth.types import Did


def slow_resolve(space: OpId, ops: dict[OpId, Op]) -> SpaceState:
    excluded: set[OpId] = set()
    while True:
        state, revoked = _walk(space, ops, excluded)
        if not revoked:
            return state
        excluded |= revoked


def _walk(space: OpId, ops: dict[OpId, Op], excluded: set[OpId]) -> tuple[SpaceState, set[OpId]]:
    state = SpaceState(space)
    ancestors: dict[OpId, set[OpId]] = {}
    depth: dict[OpId, int] = {}
    walked: list[OpId] = []
    accepted: dict[OpId, list[tuple[Did, Rank]]] = {}  # accepted op -> its rank changes

    def past_rank(op_id: OpId) -> Rank:
        author = ops[op_id].author
        rank = Rank.NONE
        for done in walked:  # in walk order: the last change to the author wins
            if done in ancestors[op_id]:
                for did, r in accepted.get(done, ()):
                    if did == author:
                        rank = r
        return rank

    changes: list[tuple[Did, Rank]] = []

    def on_rank(did: Did, rank: Rank) -> None:
        changes.append((did, rank))

    found: set[OpId] = set()  # revoked by this walk, for the next round
    relied: dict[OpId, Rank] = {}  # the rank each op relied on when it was applied
    ready: set[OpId] = set()
    if space in ops and isinstance(ops[space].body, Create):
        ancestors[space], depth[space] = set(), 0
        ready.add(space)
    while ready:
        key = {i: (-past_rank(i), depth[i], i) for i in ready}
        op_id = min(ready, key=key.__getitem__)
        ready.discard(op_id)
        op = ops[op_id]
        changes.clear()
        if op_id in excluded:
            why: str | None = "revoked"
        elif op.space != space and op_id != space:
            why = "wrong-space"
        elif any(op.time < ops[p].time for p in op.parents):
            why = "clock"
        else:
            relied[op_id] = relied_rank(state, op)
            why = apply(state, op_id, op, Rank(-key[op_id][0]), on_rank)
        if why is None:
            state.accepted += 1
            revoked = {
                o
                for did, rank in changes
                if did != op.author
                for o in walked
                if o in accepted
                and ops[o].author == did
                and relied[o] > rank
                and o not in ancestors[op_id]
            }
            found |= revoked
            accepted[op_id] = list(changes)
        else:
            state.rejected[op_id] = why
        walked.append(op_id)
        for child, cop in ops.items():
            if child in ancestors or op_id not in cop.parents:
                continue
            if all(p in walked for p in cop.parents):
                ancestors[child] = set().union(*(ancestors[p] | {p} for p in cop.parents))
                depth[child] = 1 + max(depth[p] for p in cop.parents)
                ready.add(child)
    for op_id in ops:
        if op_id not in walked:
            state.rejected[op_id] = "unknown-parent"
    return state, found
