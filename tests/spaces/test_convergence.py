"""Convergence: random concurrent histories (several admins and moderators, partitioned
replicas) give one state whatever order their ops are delivered in, incrementally or all
at once, and the same state as the slow reference resolution."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.spaces import OpId, Resolver, canonical
from tests.spaces.gen import history
from tests.spaces.reference import slow_resolve


@settings(max_examples=6_000)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_ops=st.integers(1, 18),
    n_replicas=st.integers(1, 4),
    data=st.data(),
)
def test_any_delivery_order_gives_one_state(
    seed: int, n_ops: int, n_replicas: int, data: st.DataObject
) -> None:
    h = history(seed, n_ops, n_replicas)
    at_once = Resolver(h.space)
    at_once.add_all(h.ops)
    want = canonical(at_once.state.to_json())

    # Delivered one by one in a random order, the state read after every op
    # (exercising the walk's continuation, waiting ops and re-runs).
    order = data.draw(st.permutations(h.ops))
    one_by_one = Resolver(h.space)
    for op_id, op in order:
        one_by_one.add(op_id, op)
        one_by_one.state  # noqa: B018
    assert canonical(one_by_one.state.to_json()) == want

    # Another order, read once at the end.
    other = Resolver(h.space)
    other.add_all(data.draw(st.permutations(h.ops)))
    assert canonical(other.state.to_json()) == want


@settings(max_examples=1_500)
@given(seed=st.integers(0, 2**32 - 1), n_ops=st.integers(1, 14), n_replicas=st.integers(1, 4))
def test_resolver_matches_the_reference(seed: int, n_ops: int, n_replicas: int) -> None:
    h = history(seed, n_ops, n_replicas)
    r = Resolver(h.space)
    r.add_all(h.ops)
    want = slow_resolve(h.space, dict(h.ops))
    assert r.state.to_json() == want.to_json()


def test_histories_do_conflict() -> None:
    """The generator makes real conflicts: ops refused for rank at their causal
    position, ops revoked by a concurrent demotion (a test of convergence that never
    hit them would prove little)."""
    reasons: set[str] = set()
    for seed in range(300):
        h = history(seed, 18, 3)
        r = Resolver(h.space)
        r.add_all(h.ops)
        reasons.update(r.state.rejected.values())
    assert {"rank", "rank-not-seen", "revoked", "target-rank", "not-member", "self"} <= reasons


@settings(max_examples=300)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_ops=st.integers(30, 50),
    n_replicas=st.integers(2, 5),
    data=st.data(),
)
def test_staff_purges_chain_revocations_alike(
    seed: int, n_ops: int, n_replicas: int, data: st.DataObject
) -> None:
    """Longer histories where the owner and admins keep removing staff on stale branches:
    revocations chain over several rounds; the resolver agrees with the reference, and
    any delivery order, read as it goes, ends at the same state."""
    h = history(seed, n_ops, n_replicas, purges=0.25)
    want = slow_resolve(h.space, dict(h.ops)).to_json()
    r = Resolver(h.space)
    for op_id, op in data.draw(st.permutations(h.ops)):
        r.add(op_id, op)
        r.state  # noqa: B018
    assert r.state.to_json() == want


def test_staff_purges_make_multi_round_revocations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The purge-heavy histories above do reach chains of revocation (several rounds)."""
    walks: list[int] = []
    fresh = Resolver._fresh_walk

    def counting(self: Resolver, excluded: frozenset[OpId]) -> object:
        walks[-1] += 1
        return fresh(self, excluded)

    monkeypatch.setattr(Resolver, "_fresh_walk", counting)
    for seed in range(200):
        walks.append(0)
        h = history(seed, 40, 4, purges=0.25)
        r = Resolver(h.space)
        r.add_all(h.ops)
        r.state  # noqa: B018
    assert max(walks) >= 3  # two rounds of revocation, then the clean walk
