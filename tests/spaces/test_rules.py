"""One test per rank rule, read off the resolved state (the corpus covers the same
ground for both implementations; these say what broke when one fails)."""

from __future__ import annotations

from hearth.jwt import Signer
from hearth.spaces import Rank, sign_invite
from hearth.spaces.encoding import actor_for
from hearth.spaces.ops import (
    Approve,
    Ban,
    BindActor,
    Deny,
    Invite,
    Join,
    JoinPolicy,
    Kick,
    Knock,
    Leave,
    Purge,
    Redact,
    RevokeInvite,
    SetRole,
    SetStampCost,
    SignedOp,
    Unban,
)
from hearth.spaces.stamps import Purpose, make_stamp
from tests.spaces.world import Person, Space, person, seed_for

alice, bob, carol, dave, erin = (person(n) for n in ["alice", "bob", "carol", "dave", "erin"])
JOIN = Join(None, None, None)


def space(policy: JoinPolicy = JoinPolicy.OPEN) -> Space:
    s = Space(alice, policy)
    for p in (bob, carol, dave):
        s.write(p, JOIN)
    return s


def knock(s: Space, who: Person, note: str) -> SignedOp:
    """A knock with a real 2-bit stamp made for its own time."""
    t = s.clock + 1000
    made = make_stamp(who.did, s.id, Purpose.JOIN, 2, t, seed=seed_for(who.name)[:8])
    return s.write(who, Knock(note, made.encode()), time=t)


def why(s: Space, op: SignedOp) -> str | None:
    return s.log.state.rejected.get(op.id)


def test_the_creator_is_owner_and_members_join_an_open_space() -> None:
    s = space()
    st = s.log.state
    assert st.owner == alice.did and st.rank_of(alice.did) is Rank.OWNER
    assert st.rank_of(bob.did) is Rank.MEMBER and st.rank_of(erin.did) is Rank.NONE
    assert st.may_write(bob.did) and not st.may_write(erin.did)
    assert st.may_read(erin.did) and st.may_read(None)  # open: anyone not banned reads


def test_only_the_owner_appoints_admins_and_admins_appoint_moderators() -> None:
    s = space()
    assert why(s, s.write(alice, SetRole(bob.did, Rank.ADMIN))) is None
    assert why(s, s.write(bob, SetRole(carol.did, Rank.ADMIN))) == "rank"
    assert why(s, s.write(bob, SetRole(carol.did, Rank.MODERATOR))) is None
    assert why(s, s.write(carol, SetRole(dave.did, Rank.MODERATOR))) == "rank"
    assert why(s, s.write(bob, SetRole(alice.did, Rank.MEMBER))) == "target-rank"
    assert why(s, s.write(carol, Kick(bob.did, ""))) == "target-rank"
    assert why(s, s.write(bob, SetRole(carol.did, Rank.MEMBER))) is None
    assert s.log.state.rank_of(carol.did) is Rank.MEMBER


def test_nobody_acts_on_an_equal_rank_or_on_themself() -> None:
    s = space()
    s.write(alice, SetRole(bob.did, Rank.MODERATOR))
    s.write(alice, SetRole(carol.did, Rank.MODERATOR))
    assert why(s, s.write(bob, Ban(carol.did, ""))) == "target-rank"
    assert why(s, s.write(bob, Kick(bob.did, ""))) == "self"
    assert why(s, s.write(alice, SetRole(alice.did, Rank.MEMBER))) == "self"


def test_ownership_transfer_makes_the_old_owner_an_admin() -> None:
    s = space()
    assert why(s, s.write(alice, SetRole(bob.did, Rank.OWNER))) is None
    st = s.log.state
    assert st.owner == bob.did and st.rank_of(alice.did) is Rank.ADMIN
    assert why(s, s.write(alice, SetRole(bob.did, Rank.OWNER))) == "rank"
    assert why(s, s.write(alice, SetRole(bob.did, Rank.MEMBER))) == "target-rank"
    assert why(s, s.write(bob, Leave())) == "owner-cannot-leave"
    assert why(s, s.write(alice, Leave())) is None


def test_kick_lets_them_rejoin_a_ban_does_not_until_unbanned() -> None:
    s = space()
    s.write(alice, SetRole(bob.did, Rank.MODERATOR))
    assert why(s, s.write(bob, Kick(carol.did, "cool off"))) is None
    assert not s.log.state.may_write(carol.did)
    assert why(s, s.write(carol, JOIN)) is None
    assert why(s, s.write(bob, Ban(carol.did, "spam"))) is None
    st = s.log.state
    assert st.bans[carol.did].reason == "spam" and st.bans[carol.did].by == bob.did
    assert not st.may_read(carol.did) and not st.may_write(carol.did)
    assert why(s, s.write(carol, JOIN)) == "banned"
    assert why(s, s.write(carol, Redact("c", "m", carol.did, ""))) == "not-member"
    assert why(s, s.write(bob, Unban(carol.did))) is None
    assert why(s, s.write(carol, JOIN)) is None


def test_redaction_by_the_author_or_a_moderator_over_lower_ranks() -> None:
    s = space()
    s.write(alice, SetRole(bob.did, Rank.MODERATOR))
    assert why(s, s.write(carol, Redact("c", "own", carol.did, ""))) is None
    assert why(s, s.write(carol, Redact("c", "m2", dave.did, ""))) == "rank"
    assert why(s, s.write(bob, Redact("c", "m3", dave.did, "spam"))) is None
    assert why(s, s.write(bob, Redact("c", "m4", alice.did, ""))) == "target-rank"
    assert why(s, s.write(bob, Redact("c", "m3", dave.did, "again"))) is None
    st = s.log.state
    assert st.is_redacted("c", "own") and st.is_redacted("c", "m3")
    assert not st.is_redacted("c", "m2") and not st.is_redacted("c", "m4")


def test_purges_chain() -> None:
    s = space()
    s.write(alice, Purge("c1", "c2", ""))
    s.write(alice, Purge("c2", "c3", ""))
    assert why(s, s.write(alice, Purge("c1", "c9", ""))) == "already-purged"
    assert s.log.state.current_channel("c1") == "c3"
    assert s.log.state.current_channel("other") == "other"


def test_invite_uses_expiry_revocation_and_signature() -> None:
    s = space(JoinPolicy.INVITE_ONLY)
    key = Signer.from_ed25519_seed(seed_for("invite"))
    mb = key.did_key[len("did:key:") :]
    inv = s.write(alice, Invite(mb, s.clock + 10_000, 1))

    def join(p: object, time: int | None = None) -> SignedOp:
        sig = sign_invite(inv.id, p.did, key)  # type: ignore[attr-defined]
        return s.write(p, Join(inv.id, sig, None), sorted({*s.heads(), inv.id}), time)  # type: ignore[arg-type]

    assert why(s, s.write(erin, JOIN)) == "policy"
    forged = s.write(erin, Join(inv.id, sign_invite(inv.id, dave.did, key), None),
                     sorted({*s.heads(), inv.id}))  # fmt: skip
    assert why(s, forged) == "invite-bad-sig"
    assert why(s, join(erin)) is None
    st = s.log.state
    assert st.members[erin.did].ticket and st.invites[inv.id].uses == 1
    s.write(erin, Leave())
    assert why(s, join(erin)) == "invite-used-up"
    inv2 = s.write(alice, Invite(mb, s.clock + 5_000, None))
    inv = inv2
    assert why(s, join(erin, time=s.clock + 60_000)) == "invite-expired"
    s.write(alice, RevokeInvite(inv2.id), sorted({*s.heads(), inv2.id}))
    assert why(s, join(erin)) == "invite-revoked"
    assert s.log.state.invites[inv2.id].revoked


def test_knock_approve_with_ticket_and_deny() -> None:
    s = space(JoinPolicy.APPROVAL)  # bob, carol, dave were refused: policy
    assert not s.log.state.is_member(bob.did)
    s.write(alice, SetStampCost(2, 8))
    assert why(s, s.write(erin, Knock("hi", None))) == "stamp-missing"
    assert why(s, s.write(erin, Knock("hi", "stamp"))) == "stamp-malformed"
    k = knock(s, erin, "hi")
    assert s.log.state.requests[k.id].note == "hi"
    assert why(s, s.write(alice, Approve(k.id, True), sorted({*s.heads(), k.id}))) is None
    st = s.log.state
    assert st.is_member(erin.did) and not st.needs_first_post_stamp(erin.did)
    assert not st.requests
    kb = knock(s, bob, "me")
    assert why(s, s.write(alice, Deny(kb.id, "no"), sorted({*s.heads(), kb.id}))) is None
    assert not s.log.state.is_member(bob.did) and not s.log.state.requests
    kc = knock(s, carol, "")
    s.write(alice, Approve(kc.id, False), sorted({*s.heads(), kc.id}))
    assert s.log.state.needs_first_post_stamp(carol.did)
    assert not s.log.state.may_read(dave.did)  # approval space: non-members read nothing


def test_actor_binding() -> None:
    s = space()
    actor = actor_for(s.id, bob.did, "phone")
    assert why(s, s.write(bob, BindActor(actor, "phone"))) is None
    st = s.log.state
    assert st.actor_did(actor) == bob.did
    assert st.may_write_as(bob.did, actor) and not st.may_write_as(carol.did, actor)
    s.write(bob, Leave())
    assert s.log.state.actor_did(actor) == bob.did  # history stays attributable
    assert not s.log.state.may_write_as(bob.did, actor)


def test_a_promotion_not_seen_does_not_validate_an_op() -> None:
    s = space()
    fork = s.heads()
    s.write(alice, SetRole(bob.did, Rank.MODERATOR), fork)
    early = s.write(bob, Kick(carol.did, ""), fork)
    late = s.write(bob, Kick(dave.did, ""))
    assert why(s, early) == "rank-not-seen"
    assert why(s, late) is None


def test_an_op_before_its_parents_time_is_refused() -> None:
    s = space()
    op = s.write(bob, Leave(), time=s.clock - 5_000)
    assert why(s, op) == "clock"


def test_access_snapshots_name_who_lost_access() -> None:
    s = space(JoinPolicy.APPROVAL)
    k = knock(s, bob, "")
    s.write(alice, Approve(k.id, False), sorted({*s.heads(), k.id}))
    k = knock(s, carol, "")
    s.write(alice, Approve(k.id, False), sorted({*s.heads(), k.id}))
    s.write(alice, SetRole(bob.did, Rank.MODERATOR))
    before = s.log.state.access()
    s.write(bob, Kick(carol.did, ""))
    after = s.log.state.access()
    assert before.lost_read(after) == {carol.did} == before.lost_write(after)
    assert after.lost_read(s.log.state.access()) == set()
    assert before.may_read(carol.did) and not after.may_read(carol.did)
