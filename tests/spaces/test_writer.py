"""The writer: ops on top of every head, naming what they refer to, never before a
parent's time."""

from __future__ import annotations

import pytest

from hearth.spaces import AuthorityLog, OpError, Rank
from hearth.spaces.invites import InviteToken, new_invite
from hearth.spaces.ops import (
    Approve,
    Join,
    JoinPolicy,
    Knock,
    Leave,
    Op,
    RevokeInvite,
    SetDescription,
    SetRole,
)
from hearth.spaces.signing import sign_op
from hearth.spaces.writer import create_space, write
from tests.spaces.world import person, seed_for

alice, bob, carol = person("alice"), person("bob"), person("carol")
T = 1_780_000_000_000


def test_a_space_written_with_the_writer() -> None:
    log, create = create_space(alice.signer, alice.did, "Garden", "Inner", T)
    assert log.state.owner == alice.did and log.state.policy is JoinPolicy.INVITE_ONLY
    body, seed = new_invite(max_uses=3, seed=seed_for("w"))
    inv = write(log, alice.signer, alice.did, body, T + 1)
    token = InviteToken(log.space, inv.id, seed)
    write(log, alice.signer, alice.did, SetDescription("d"), T + 2)
    # bob joins later: the writer names the invite, though it is no head any more
    join = write(log, bob.signer, bob.did, token.join(bob.did), T + 3)
    assert inv.id in join.op.parents and log.state.is_member(bob.did)
    write(log, alice.signer, alice.did, SetRole(bob.did, Rank.MODERATOR), T + 4)
    write(log, alice.signer, alice.did, RevokeInvite(inv.id), T + 5)
    assert log.state.invites[inv.id].revoked
    assert not log.state.rejected


def test_time_never_goes_before_a_parent() -> None:
    log, _ = create_space(alice.signer, alice.did, "a", "b", T, policy=JoinPolicy.APPROVAL)
    knock = write(log, carol.signer, carol.did, Knock("hi", None), T + 60_000)
    late_clock = write(log, alice.signer, alice.did, Approve(knock.id, False), T)
    assert late_clock.op.time == T + 60_000
    assert log.state.is_member(carol.did) and not log.state.rejected


def test_concurrent_heads_are_merged() -> None:
    log, create = create_space(alice.signer, alice.did, "a", "b", T)
    branches = []
    for i in range(3):
        op = Op(log.space, alice.did, (create.id,), T + i, SetDescription(str(i)))
        branches.append(sign_op(op, alice.signer))
        log.add_signed(branches[-1])
    merged = write(log, alice.signer, alice.did, SetDescription("merged"), T + 10)
    assert set(merged.op.parents) == {b.id for b in branches}
    assert log.heads == [merged.id]


def test_the_signer_must_be_the_authors() -> None:
    log, _ = create_space(alice.signer, alice.did, "a", "b", T)
    with pytest.raises(OpError) as e:
        write(log, bob.signer, alice.did, SetDescription("forged"), T + 1)
    assert e.value.reason == "bad-signature"


def test_the_next_op_builds_on_a_rejected_one_so_replicas_must_keep_it() -> None:
    """docs/spaces.md, "Keep every op that verifies": a rejected op stays a head and the
    writer's next op names it; a replica without it holds that op back for ever."""
    log, _ = create_space(alice.signer, alice.did, "a", "b", T, policy=JoinPolicy.OPEN)
    join = write(log, bob.signer, bob.did, Join(None, None, None), T + 1)
    refused = write(log, bob.signer, bob.did, SetDescription("members may not"), T + 2)
    assert log.state.rejected == {refused.id: "rank"}
    nxt = write(log, bob.signer, bob.did, Leave(), T + 3)
    assert refused.id in nxt.op.parents
    dropping = AuthorityLog(log.space)
    for op_id in (log.space, join.id, nxt.id):
        dropping.add(log.wire(op_id))
    assert dropping.state.rejected == {nxt.id: "unknown-parent"}
    assert dropping.state.is_member(bob.did)  # bob's leave never takes effect there
