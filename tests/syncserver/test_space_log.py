"""The server's admission policy without I/O: keep what takes effect or waits for a
parent, refuse what the rules reject, keep nothing of a batch over a limit."""

from __future__ import annotations

import pytest

from hearth.spaces import OpId, canonical
from hearth.spaces.ops import Approve, Deny, Join, JoinPolicy, Knock, Rank, SetDescription, SetRole
from syncserver.space_log import LimitExceeded, SpaceLog
from tests.spaces.world import Space, person

alice, bob, carol, dave = person("alice"), person("bob"), person("carol"), person("dave")
JOIN = Join(None, None, None)
BIG = {"max_ops": 1000, "max_pending": 100, "max_rejected_per_author": 100}


def test_rule_rejected_ops_are_kept_without_effect() -> None:
    """A rejected op stays in the graph, so what descends from it is not stranded."""
    s = Space(alice, JoinPolicy.OPEN)
    s.write(bob, JOIN)
    log = SpaceLog(OpId(s.id))
    assert log.admit(s.ops, **BIG) == [o.id for o in s.ops]
    escalation = s.write(bob, SetRole(carol.did, Rank.ADMIN))
    child = s.write(alice, SetDescription("after"), [escalation.id])
    assert log.admit([escalation, child], **BIG) == [escalation.id, child.id]
    assert log.state.rejected == {escalation.id: "rank"}
    assert log.status(escalation.id).reason == "rank"
    assert log.status(child.id).status == "accepted"
    assert log.state.description == "after"
    again = SpaceLog.load(OpId(s.id), [o.wire for o in log.ops.values()])
    assert canonical(again.state.to_json()) == canonical(log.state.to_json())


def test_rejected_ops_per_author_are_bounded() -> None:
    s = Space(alice, JoinPolicy.OPEN)
    s.write(bob, JOIN)
    log = SpaceLog(OpId(s.id))
    limits = {"max_ops": 100, "max_pending": 10, "max_rejected_per_author": 2}
    log.admit(s.ops, **limits)
    tries = [s.write(bob, SetRole(carol.did, Rank.ADMIN), [OpId(s.id)]) for _ in range(3)]
    log.admit(tries[:2], **limits)
    before = len(log)
    with pytest.raises(LimitExceeded) as e:
        log.admit(tries[2:] + [s.write(alice, SetDescription("x"))], **limits)
    assert e.value.error == "TooManyRejectedOps" and len(log) == before
    assert log.state.description == ""
    # Others are not held back by bob's quota.
    assert len(log.admit([s.write(alice, SetDescription("y"), log.heads)], **limits)) == 1


def test_limits_keep_nothing_of_the_batch() -> None:
    s = Space(alice, JoinPolicy.OPEN)
    log = SpaceLog(OpId(s.id))
    log.admit(s.ops, **BIG)
    ops = [s.write(alice, SetDescription(f"{i}")) for i in range(3)]
    with pytest.raises(LimitExceeded) as e:
        log.admit(ops, max_ops=3, max_pending=10, max_rejected_per_author=9)
    assert e.value.error == "LogFull" and len(log) == 1
    with pytest.raises(LimitExceeded) as e:
        log.admit(ops[1:], max_ops=10, max_pending=1, max_rejected_per_author=9)
    assert e.value.error == "TooManyPending" and len(log) == 1
    assert log.state.description == ""
    assert len(log.admit(ops, max_ops=4, max_pending=0, max_rejected_per_author=9)) == 3
    assert log.state.description == "2"


def test_requests_of_a_knocker() -> None:
    s = Space(alice, JoinPolicy.APPROVAL)
    log = SpaceLog(OpId(s.id))
    k1 = s.write(carol, Knock("me", None), [OpId(s.id)])
    k2 = s.write(dave, Knock("me too", None), [OpId(s.id)])
    log.admit(s.ops, **BIG)
    assert [r["status"] for r in log.requests_of(carol.did)] == ["pending"]
    approve = s.write(alice, Approve(k1.id, False), [k1.id, k2.id])
    deny = s.write(alice, Deny(k2.id, "no"), [approve.id, k2.id])  # the request: a parent
    assert log.admit([approve, deny], **BIG) == [approve.id, deny.id]
    assert log.requests_of(carol.did) == [{"id": k1.id, "note": "me", "status": "approved"}]
    assert log.requests_of(dave.did) == [
        {"id": k2.id, "note": "me too", "status": "denied", "reason": "no"}
    ]
    assert log.requests_of(bob.did) == []
