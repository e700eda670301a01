"""Stamps as the authority log enforces them (the rules' stamp check, docs/spaces.md):
a request without a stamp, with a too-cheap, misbound, stale or replayed one is
refused with a precise reason, on every delivery order. Costs of 3 bits keep it fast."""

from __future__ import annotations

import random

from hearth.spaces import AuthorityLog
from hearth.spaces.ops import (
    Deny,
    Join,
    JoinPolicy,
    Knock,
    OpId,
    SetJoinPolicy,
    SetStampCost,
    SignedOp,
)
from hearth.spaces.stamps import (
    WINDOW_MS,
    Purpose,
    leading_zero_bits,
    make_stamp,
    stamp_required,
)
from hearth.spaces.stamps import argon2 as evaluate
from hearth.spaces.stamps import challenge as challenge_of
from tests.spaces.world import Person, Space, person

alice, dave, erin = person("alice"), person("dave"), person("erin")
BITS = 3


def stamp_for(s: Space, who: Person, time: int, *, space: str | None = None,
              purpose: Purpose = Purpose.JOIN, seed: bytes = b"seed0000") -> str:  # fmt: skip
    return make_stamp(who.did, space or s.id, purpose, BITS, time, seed=seed).encode()


def cheap_for(s: Space, who: Person, time: int) -> str:
    """A stamp worth fewer than BITS (found from fixed seeds)."""
    for i in range(100):
        st = make_stamp(who.did, s.id, Purpose.JOIN, 0, time, seed=i.to_bytes(8, "big"))
        chal = challenge_of(who.did, s.id, Purpose.JOIN, st.window)
        if leading_zero_bits(evaluate(chal, st.nonce)) < BITS:
            return st.encode()
    raise AssertionError("no cheap stamp in 100 seeds")


def knock(s: Space, who: Person, stamp: str | None) -> SignedOp:
    t = s.clock + 1000
    return s.write(who, Knock("let me in", stamp), time=t)


def test_knocks_and_joins_are_refused_with_precise_reasons() -> None:
    s = Space(alice, JoinPolicy.APPROVAL)
    s.write(alice, SetStampCost(BITS, 0))
    assert stamp_required(s.log.state, erin.did, Purpose.JOIN) == BITS
    other = Space(alice, JoinPolicy.APPROVAL, nonce="other")
    expect: dict[OpId, str] = {}
    nxt = s.clock + 1000

    def refused(op: SignedOp, reason: str) -> None:
        expect[op.id] = reason
        assert s.log.state.rejected.get(op.id) == reason

    refused(knock(s, erin, None), "stamp-missing")
    refused(knock(s, erin, "stamp"), "stamp-malformed")
    refused(knock(s, erin, cheap_for(s, erin, s.clock + 1000)), "stamp-too-cheap")
    refused(knock(s, erin, stamp_for(s, dave, s.clock + 1000)), "stamp-wrong-did")
    refused(knock(s, erin, stamp_for(s, erin, s.clock + 1000, space=other.id)), "stamp-wrong-space")
    fp = stamp_for(s, erin, s.clock + 1000, purpose=Purpose.FIRST_POST)
    refused(knock(s, erin, fp), "stamp-wrong-purpose")
    refused(knock(s, erin, stamp_for(s, erin, s.clock - 3 * WINDOW_MS)), "stamp-expired")
    refused(knock(s, erin, stamp_for(s, erin, s.clock + 3 * WINDOW_MS)), "stamp-future")
    good = stamp_for(s, erin, nxt)
    k = knock(s, erin, good)
    assert k.id in s.log.state.requests
    s.write(alice, Deny(k.id, "not yet"), parents=sorted({*s.heads(), k.id}))
    refused(knock(s, erin, good), "stamp-replayed")  # the same stamp cannot knock again
    k2 = knock(s, erin, stamp_for(s, erin, s.clock + 1000, seed=b"seed0001"))
    assert k2.id in s.log.state.requests  # a fresh stamp does
    s.write(alice, SetJoinPolicy(JoinPolicy.OPEN))
    t = s.clock + 1000
    j = s.write(dave, Join(None, None, stamp_for(s, dave, t)), time=t)
    assert s.log.state.is_member(dave.did) and j.id not in s.log.state.rejected
    assert {i: s.log.state.rejected.get(i) for i in expect} == expect  # later ops changed nothing

    # every delivery order gives the same refusals and the same state
    final = s.log.state.to_json()
    for seed in range(3):
        wires = list(s.wires)
        random.Random(seed).shuffle(wires)
        log = AuthorityLog(s.id)
        for w in wires:
            log.add(w)
        assert log.state.to_json() == final
