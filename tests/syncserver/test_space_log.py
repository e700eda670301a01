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
BIG = {"max_ops": 1000, "max_pending": 100}


def test_rule_refusals_are_not_kept_and_change_nothing() -> None:
    s = Space(alice, JoinPolicy.OPEN)
    join = s.write(bob, JOIN)
    log = SpaceLog(OpId(s.id))
    assert log.admit(s.ops, **BIG) == {}
    before = canonical(log.state.to_json())
    escalation = s.write(bob, SetRole(carol.did, Rank.ADMIN))
    child = s.write(alice, SetDescription("after"), [escalation.id])
    refused = log.admit([escalation, child], **BIG)
    assert {i: e.reason for i, e in refused.items()} == {escalation.id: "rank"}
    assert escalation.id not in log.ops
    # Its child waits for a parent the server will not keep.
    assert log.status(child.id).status == "pending"
    assert log.pending() == [child.id]
    del log.ops[child.id]
    log = SpaceLog.load(OpId(s.id), [o.wire for o in log.ops.values()])
    assert canonical(log.state.to_json()) == before
    assert log.heads == [join.id]


def test_limits_keep_nothing_of_the_batch() -> None:
    s = Space(alice, JoinPolicy.OPEN)
    log = SpaceLog(OpId(s.id))
    log.admit(s.ops, **BIG)
    ops = [s.write(alice, SetDescription(f"{i}")) for i in range(3)]
    with pytest.raises(LimitExceeded) as e:
        log.admit(ops, max_ops=3, max_pending=10)
    assert e.value.error == "LogFull" and len(log) == 1
    with pytest.raises(LimitExceeded) as e:
        log.admit(ops[1:], max_ops=10, max_pending=1)
    assert e.value.error == "TooManyPending" and len(log) == 1
    assert log.state.description == ""
    assert log.admit(ops, max_ops=4, max_pending=0) == {}
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
    assert log.admit([approve, deny], **BIG) == {}
    assert log.requests_of(carol.did) == [{"id": k1.id, "note": "me", "status": "approved"}]
    assert log.requests_of(dave.did) == [
        {"id": k2.id, "note": "me too", "status": "denied", "reason": "no"}
    ]
    assert log.requests_of(bob.did) == []
