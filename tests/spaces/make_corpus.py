"""Writes the shared corpus, tests/spaces/corpus/*.json: op sets with the state and
the refusals every implementation (Python here, TypeScript in the PWA) must reach.

    .venv/bin/python -m tests.spaces.make_corpus          # rewrite the files
    .venv/bin/python -m tests.spaces.make_corpus --check  # fail if they are stale

Keys and times are fixed, so the output is the same byte for byte on every run.
A file: {"name", "description", "space", "ops": [wire op as a string, ...],
"expect": {"refused": [{"index", "reason"}], "state": {...}}} - see docs/spaces.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from hearth.jwt import Signer
from hearth.spaces import AuthorityLog, OpError, canonical, sign_invite
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
    Op,
    OpId,
    Purge,
    Rank,
    Redact,
    RevokeInvite,
    SetDescription,
    SetJoinPolicy,
    SetName,
    SetRole,
    SetStampCost,
    SignedOp,
    Unban,
)
from hearth.spaces.signing import sign_op
from hearth.spaces.stamps import Purpose, argon2, challenge, leading_zero_bits, make_stamp
from hearth.types import Did
from tests.spaces.gen import history
from tests.spaces.world import Person, Space, person, seed_for

CORPUS = Path(__file__).parent / "corpus"

alice, bob, carol, dave, erin, frank, mallory = (
    person(n) for n in ["alice", "bob", "carol", "dave", "erin", "frank", "mallory"]
)
NO_INVITE = Join(None, None, None)


def invite_key(name: str) -> Signer:
    return Signer.from_ed25519_seed(seed_for("invite:" + name))


def after(s: Space, *ops: SignedOp) -> list[OpId]:
    """Parents for an op that follows everything so far and names `ops` (which it refers to)."""
    return sorted({*s.heads(), *(o.id for o in ops)})


def stamp(s: Space, who: Person, bits: int, time: int, *, purpose: Purpose = Purpose.JOIN,
          space: str | None = None, name: str = "") -> str:  # fmt: skip
    """A real stamp (stamps.py), found from a fixed seed so the corpus is reproducible."""
    seed = seed_for(f"stamp:{who.name}:{time}:{name}")[:8]
    return make_stamp(who.did, space or s.id, purpose, bits, time, seed=seed).encode()


def knock(s: Space, who: Person, note: str, bits: int) -> SignedOp:
    """`who` knocks with a stamp worth `bits` made for the knock's own time."""
    t = s.clock + 1000
    return s.write(who, Knock(note, stamp(s, who, bits, t)), time=t)


def members(s: Space, *people: object) -> None:
    for p in people:
        s.write(p, NO_INVITE)  # type: ignore[arg-type]


# --- scenarios -----------------------------------------------------------------


def create_only() -> tuple[str, Space]:
    return "A space with only its create op: the creator is its owner.", Space(alice)


def every_op_kind() -> tuple[str, Space]:
    s = Space(alice, JoinPolicy.OPEN)
    members(s, bob, carol)
    s.write(alice, SetName("Garden", "Garden (inner circle)"))
    s.write(alice, SetDescription("Plants and the people who water them."))
    s.write(alice, SetRole(bob.did, Rank.ADMIN))
    s.write(bob, SetRole(carol.did, Rank.MODERATOR))
    key = invite_key("garden")
    inv = s.write(bob, Invite(key.did_key[len("did:key:") :], 1_780_000_100_000, 5))
    s.write(dave, Join(inv.id, sign_invite(inv.id, dave.did, key), None), parents=s.heads())
    s.write(bob, RevokeInvite(inv.id), parents=after(s, inv))
    s.write(bob, SetJoinPolicy(JoinPolicy.APPROVAL))
    s.write(bob, SetStampCost(4, 2))
    k1 = knock(s, erin, "I grow tomatoes", 4)
    s.write(carol, Approve(k1.id, True), parents=s.heads())
    k2 = knock(s, frank, "", 4)
    s.write(carol, Deny(k2.id, "we do not know you"), parents=s.heads())
    s.write(carol, Redact("chan-1", "msg-1", erin.did, "off topic"))
    s.write(carol, Purge("chan-1", "chan-1b", "personal data"))
    s.write(carol, Kick(dave.did, "cool down"))
    s.write(carol, Ban(mallory.did, "spam elsewhere"))
    s.write(carol, Unban(mallory.did))
    s.write(carol, Ban(mallory.did, "spam here"))
    s.write(erin, BindActor(actor_for(s.id, erin.did, "laptop"), "laptop"))
    s.write(erin, Redact("chan-1b", "msg-9", erin.did, ""))
    s.write(erin, Leave())
    s.write(alice, SetRole(bob.did, Rank.OWNER))
    return "Every op kind once, in one line of history, each taking effect.", s


def rank_rules() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob, carol, dave, erin)
    s.write(alice, SetRole(bob.did, Rank.ADMIN))
    s.write(alice, SetRole(erin.did, Rank.ADMIN))
    s.write(bob, SetRole(carol.did, Rank.MODERATOR))
    s.write(bob, SetRole(dave.did, Rank.ADMIN))  # rank: an admin cannot make admins
    s.write(bob, SetRole(erin.did, Rank.MEMBER))  # target-rank: nor touch one
    s.write(bob, SetRole(alice.did, Rank.MEMBER))  # target-rank: nor the owner
    s.write(carol, SetRole(dave.did, Rank.MODERATOR))  # rank: moderators set no roles
    s.write(dave, Kick(carol.did, ""))  # rank: members kick nobody
    s.write(carol, Ban(bob.did, ""))  # target-rank
    s.write(carol, Kick(carol.did, ""))  # self
    s.write(bob, SetRole(bob.did, Rank.MEMBER))  # self
    s.write(alice, Leave())  # owner-cannot-leave
    s.write(frank, Redact("c", "m", dave.did, ""))  # not-member
    s.write(carol, Kick(frank.did, ""))  # target-not-member
    s.write(carol, Unban(frank.did))  # not-banned
    s.write(carol, Ban(frank.did, "pre-emptive"))  # a non-member can be banned
    s.write(carol, Ban(frank.did, "again"))  # already-banned
    s.write(frank, NO_INVITE)  # banned
    s.write(dave, NO_INVITE)  # already-member
    s.write(carol, Redact("c", "m", dave.did, "moderator redacts a member"))
    s.write(carol, Redact("c", "m2", bob.did, ""))  # target-rank
    s.write(bob, SetDescription("admins describe"))
    s.write(carol, SetDescription("moderators do not"))  # rank
    return "Each rank rule once: what an owner, admin, moderator and member may do.", s


def mutual_demotion() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob, carol, dave, erin)
    s.write(alice, SetRole(bob.did, Rank.ADMIN))
    s.write(alice, SetRole(carol.did, Rank.ADMIN))
    s.write(alice, SetRole(dave.did, Rank.MODERATOR))
    fork = s.heads()
    # Two admins demote each other: neither may act on an equal rank.
    s.write(bob, SetRole(carol.did, Rank.MEMBER), parents=fork)
    s.write(carol, SetRole(bob.did, Rank.MEMBER), parents=fork)
    # The owner demotes bob while bob demotes dave: the owner's op goes first (rank).
    s.write(alice, SetRole(bob.did, Rank.MODERATOR), parents=fork)
    s.write(bob, SetRole(dave.did, Rank.MEMBER), parents=fork)
    # carol demotes dave while dave kicks erin: carol's op goes first (rank).
    s.write(carol, SetRole(dave.did, Rank.MEMBER), parents=fork)
    s.write(dave, Kick(erin.did, ""), parents=fork)
    s.write(bob, SetDescription("bob's, after the merge"))  # rank: bob is a moderator now
    return (
        "Concurrent demotions, resolved by the order (owner's op first, then the admins' by op "
        "id): the owner demotes bob to moderator, so bob's ops are refused 'rank' and carol's "
        "demotion of bob (equal rank on its own) takes effect; carol's demotion of dave goes "
        "before dave's kick, which is refused.",
        s,
    )


def ban_vs_promotion() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob, carol, dave, erin)
    s.write(alice, SetRole(bob.did, Rank.MODERATOR))
    s.write(alice, SetRole(carol.did, Rank.ADMIN))
    fork = s.heads()
    s.write(bob, Ban(dave.did, "moderator bans"), parents=fork)
    s.write(alice, SetRole(dave.did, Rank.MODERATOR), parents=fork)
    s.write(carol, Ban(erin.did, "admin bans"), parents=fork)
    s.write(alice, SetRole(erin.did, Rank.MODERATOR), parents=fork)
    return (
        "A ban concurrent with a promotion: the owner's promotion goes first (rank); the "
        "moderator's ban of a now-moderator is rejected, the admin's ban of one stands.",
        s,
    )


def kick_vs_leave() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob, carol)
    s.write(alice, SetRole(bob.did, Rank.MODERATOR))
    fork = s.heads()
    s.write(bob, Kick(carol.did, "kicked"), parents=fork)
    s.write(carol, Leave(), parents=fork)
    return "A kick concurrent with the target leaving: the moderator's kick goes first.", s


def demoted_moderator_redaction() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob, carol)
    s.write(alice, SetRole(bob.did, Rank.MODERATOR))
    s.write(bob, Redact("c", "before", carol.did, "seen by the owner"))
    fork = s.heads()
    s.write(alice, SetRole(bob.did, Rank.MEMBER), parents=fork)
    s.write(bob, Redact("c", "concurrent", carol.did, "not seen"), parents=fork)
    s.write(bob, Redact("c", "after", carol.did, "after the merge"))
    return (
        "A moderator redacts before, concurrently with, and after their demotion: only "
        "the first stands.",
        s,
    )


def invites() -> tuple[str, Space]:
    s = Space(alice, JoinPolicy.INVITE_ONLY)
    members(s, bob)  # policy: invite-only needs an invite
    k1, k2, k3 = invite_key("one"), invite_key("two"), invite_key("three")
    mb = len("did:key:")
    inv1 = s.write(alice, Invite(k1.did_key[mb:], s.clock + 5_000, None))
    inv2 = s.write(alice, Invite(k2.did_key[mb:], None, 2))
    inv3 = s.write(alice, Invite(k3.did_key[mb:], None, None))

    def join(p: object, inv: object, key: Signer, time: int | None = None) -> None:
        iid = inv.id  # type: ignore[attr-defined]
        sig = sign_invite(iid, p.did, key)  # type: ignore[attr-defined]
        s.write(p, Join(iid, sig, None), parents=sorted({*s.heads(), iid}), time=time)  # type: ignore[arg-type]

    join(carol, inv1, k1)  # within the expiry
    join(dave, inv1, k1, time=s.clock + 60_000)  # invite-expired
    join(bob, inv2, k2)
    join(erin, inv2, k2)
    join(frank, inv2, k2)  # invite-used-up
    s.write(mallory, Join(inv3.id, sign_invite(inv3.id, mallory.did, k2), None),
            parents=sorted({*s.heads(), inv3.id}))  # fmt: skip  # invite-bad-sig
    s.write(mallory, Join(inv3.id, sign_invite(inv3.id, mallory.did, k3), None),
            parents=[s.id])  # fmt: skip  # invite-unknown: the invite is not a parent
    fork = s.heads()
    s.write(alice, RevokeInvite(inv3.id), parents=sorted({*fork, inv3.id}))
    s.write(mallory, Join(inv3.id, sign_invite(inv3.id, mallory.did, k3), "st"),
            parents=sorted({*fork, inv3.id}))  # fmt: skip  # invite-revoked (revoke goes first)
    s.write(alice, RevokeInvite(inv3.id), parents=sorted({*s.heads(), inv3.id}))  # revoked
    return (
        "Invites: expiry (against the join's time), use count, a wrong invite signature, an "
        "invite that is not a parent, revocation concurrent with a join, double revocation.",
        s,
    )


def knock_approve_deny() -> tuple[str, Space]:
    s = Space(alice, JoinPolicy.OPEN)
    members(s, bob)
    s.write(alice, SetRole(bob.did, Rank.MODERATOR))
    s.write(carol, Knock("open space", None))  # policy: knocks only under approval
    s.write(alice, SetJoinPolicy(JoinPolicy.APPROVAL))
    s.write(mallory, NO_INVITE)  # policy
    kc = s.write(carol, Knock("hello", None))
    s.write(carol, Knock("hello again", None))  # already-pending
    s.write(bob, Approve(kc.id, False), parents=after(s, kc))
    s.write(bob, Approve(kc.id, False), parents=after(s, kc))  # request-not-pending
    kd = s.write(dave, Knock("me too", None))
    s.write(bob, Deny(kd.id, "not now"), parents=after(s, kd))
    s.write(bob, Approve(kd.id, True), parents=after(s, kd))  # request-not-pending
    s.write(alice, SetStampCost(3, 0))
    s.write(erin, Knock("no stamp", None))  # stamp-missing
    ke = knock(s, erin, "with stamp", 3)
    knock(s, frank, "waiting", 3)  # stays pending
    s.write(carol, Approve(ke.id, True), parents=after(s, ke))  # rank: carol is a member
    s.write(bob, Approve(ke.id, True), parents=s.heads())  # request-unknown (not a parent)
    km = knock(s, mallory, "let me in", 3)
    s.write(bob, Ban(mallory.did, "known troll"))  # the ban closes the request
    s.write(bob, Approve(km.id, False), parents=after(s, km))  # request-not-pending
    return "Join approval: knocks, approve (with a ticket), deny, stamps required by cost.", s


def stamps() -> tuple[str, Space]:
    s = Space(alice, JoinPolicy.APPROVAL)
    members(s, bob)  # policy
    s.write(alice, SetStampCost(3, 1))
    hour = 3_600_000

    def knock_with(text: str | None) -> SignedOp:
        return s.write(erin, Knock("", text), time=s.clock + 1000)

    knock_with(None)  # stamp-missing
    knock_with("junk")  # stamp-malformed
    t = s.clock + 1000
    knock_with(stamp(s, erin, 3, t, purpose=Purpose.FIRST_POST))  # stamp-wrong-purpose
    knock_with(stamp(s, frank, 3, s.clock + 1000))  # stamp-wrong-did
    knock_with(stamp(s, erin, 3, s.clock + 1000, space="00" * 32))  # stamp-wrong-space
    knock_with(stamp(s, erin, 3, s.clock + 1000 + 3 * hour))  # stamp-future
    knock_with(stamp(s, erin, 3, s.clock + 1000 - 3 * hour))  # stamp-expired
    t = s.clock + 1000
    for i in range(64):  # a stamp worth less than 3 bits (found from fixed seeds)
        cheap = make_stamp(erin.did, s.id, Purpose.JOIN, 0, t, seed=seed_for(f"cheap{i}")[:8])
        chal = challenge(erin.did, s.id, Purpose.JOIN, cheap.window)
        if leading_zero_bits(argon2(chal, cheap.nonce)) < 3:
            break
    knock_with(cheap.encode())  # stamp-too-cheap
    good = stamp(s, erin, 3, s.clock + 1000)
    k = knock_with(good)
    s.write(alice, Deny(k.id, "not yet"), parents=after(s, k))
    knock_with(good)  # stamp-replayed
    s.write(alice, SetJoinPolicy(JoinPolicy.OPEN))
    t = s.clock + 1000
    s.write(frank, Join(None, None, stamp(s, frank, 3, t)), time=t)  # an open join: stamped
    s.write(dave, NO_INVITE)  # stamp-missing
    key = invite_key("stamps")
    inv = s.write(alice, Invite(key.did_key[len("did:key:") :], None, None))
    s.write(dave, Join(inv.id, sign_invite(inv.id, dave.did, key), None), parents=after(s, inv))
    return (
        "Proof-of-work stamps on knocks and open joins (cost 3 bits): each way a stamp can "
        "fail, a good one, its replay; an invite needs none.",
        s,
    )


def bad_signatures() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob)
    bad = s.write(mallory, NO_INVITE, sign_as=bob)  # signed with bob's key: refused
    s.write(mallory, SetDescription("child of a refused op"), parents=[bad.id])
    s.write(bob, SetRole(bob.did, Rank.OWNER), sign_as=alice)  # not alice's op to sign
    s.write(alice, SetDescription("still fine"))
    return (
        "Ops whose signature is not their author's are refused at the boundary; an op "
        "that follows one waits for a parent that never comes (unknown-parent).",
        s,
    )


def unknown_parents() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob)
    ghost = OpId("00" * 32)
    orphan = s.write(bob, SetDescription("orphan"), parents=[ghost, *s.heads()])
    s.write(bob, Leave(), parents=[orphan.id])
    s.write(bob, SetDescription("not an admin"))
    return "Ops naming a parent nobody has are kept out of the state, with their children.", s


def forged_escalation() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob, carol, mallory)
    s.write(mallory, SetRole(mallory.did, Rank.ADMIN))  # rank
    s.write(mallory, SetRole(carol.did, Rank.ADMIN))  # rank
    fork = s.heads()
    s.write(alice, SetRole(bob.did, Rank.MODERATOR), parents=fork)
    s.write(bob, Kick(mallory.did, "written before the promotion was seen"), parents=fork)
    s.write(bob, Kick(carol.did, "after the promotion"))
    s.write(mallory, Ban(alice.did, "coup"))  # rank
    op = Op(s.id, alice.did, tuple(s.heads()), s.clock + 1, SetRole(mallory.did, Rank.ADMIN))
    forged = sign_op(op, mallory.signer)  # claims to be alice's, signed by mallory
    s.ops.append(forged)
    s.wires.append(forged.wire)
    return (
        "Escalation attempts: self-promotion, a member appointing an admin, a kick written "
        "before its author's promotion was seen (rank-not-seen), an op forged as the owner's.",
        s,
    )


def backdated_ops() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob, carol, dave, mallory)
    s.write(alice, SetRole(bob.did, Rank.ADMIN))
    s.write(alice, SetRole(carol.did, Rank.MODERATOR))
    fork = s.heads()
    seen = s.write(bob, SetDescription("bob's, seen by the owner"), parents=fork)
    # Written on a branch from before the demotion and the ban: walked before them
    # (rank 3 and depth beat dave's member ops), then revoked by them.
    s.write(bob, SetRole(carol.did, Rank.MEMBER), parents=fork)
    s.write(mallory, Redact("c", "m", mallory.did, ""), parents=fork)
    last = seen
    for i in range(4):
        nonce = f"d{i}"
        last = s.write(dave, BindActor(actor_for(s.id, dave.did, nonce), nonce), [last.id])
    demote = s.write(alice, SetRole(bob.did, Rank.MEMBER), [last.id])
    s.write(alice, Ban(mallory.did, "troll"), [demote.id])
    return (
        "Ops written on a branch from before their author's demotion or ban, walked before "
        "it, are revoked by it ('revoked'); an op the demoter had seen stands.",
        s,
    )


def backdated_against_staff() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob, carol, dave)
    s.write(alice, SetRole(bob.did, Rank.ADMIN))
    s.write(alice, SetRole(carol.did, Rank.MODERATOR))
    fork = s.heads()
    s.write(bob, Kick(carol.did, "an admin's kick of a moderator"), fork)
    last = s.ops[-1]
    for i in range(3):
        nonce = f"d{i}"
        prev = fork if i == 0 else [last.id]
        last = s.write(dave, BindActor(actor_for(s.id, dave.did, nonce), nonce), prev)
    s.write(alice, SetRole(bob.did, Rank.MODERATOR), [last.id])
    return (
        "Admin Bob, on a branch from before his demotion to moderator, kicks moderator "
        "Carol. The kick relied on admin rank (one above Carol's), so the demotion revokes "
        "it although a moderator may kick: Carol stays a moderator.",
        s,
    )


def revocation_chain() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob, dave, erin, frank, mallory)
    s.write(alice, SetRole(bob.did, Rank.ADMIN))
    fork = s.heads()

    def bind(p: Person, parent: OpId, nonce: str) -> SignedOp:
        return s.write(p, BindActor(actor_for(s.id, p.did, nonce), nonce), [parent])

    promote = s.write(bob, SetRole(frank.did, Rank.MODERATOR), fork)  # revoked by the demotion
    own = bind(mallory, fork[0], "m")  # revoked by frank's kick, in the same round
    y1 = bind(dave, promote.id, "y1")
    y2 = bind(dave, y1.id, "y2")
    s.write(frank, Kick(mallory.did, "walked after the demotion"), [y2.id])
    c1 = bind(erin, fork[0], "c1")
    s.write(alice, SetRole(bob.did, Rank.MEMBER), [c1.id])
    assert own.id and promote.id
    return (
        "A chain: the owner's demotion of admin Bob revokes Bob's promotion of Frank; Frank's "
        "kick of Mallory, walked later in the same round, still revokes Mallory's concurrent "
        "op (a round revokes everything it finds), then is itself refused 'rank' in the next "
        "round. Mallory stays a member.",
        s,
    )


def actors_and_clock() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob)
    s.write(bob, BindActor(actor_for(s.id, bob.did, "phone"), "phone"))
    s.write(bob, BindActor(actor_for(s.id, bob.did, "phone"), "phone"), time=s.clock + 10)
    s.write(carol, BindActor(actor_for(s.id, carol.did, "x"), "x"))  # not-member
    s.write(bob, SetDescription("time before its parent"), time=s.clock - 10_000)  # clock
    return (
        "Actor bindings (derived from space, DID and nonce; members only) and an op whose "
        "time is before its parent's.",
        s,
    )


def purge_race() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob, carol)
    s.write(alice, SetRole(bob.did, Rank.MODERATOR))
    s.write(alice, SetRole(carol.did, Rank.MODERATOR))
    fork = s.heads()
    s.write(bob, Purge("general", "general-b", ""), parents=fork)
    s.write(carol, Purge("general", "general-c", ""), parents=fork)
    s.write(alice, Purge("general-b", "general-d", ""))
    s.write(carol, Redact("general", "m1", carol.did, "own message"), parents=fork)
    s.write(bob, Redact("general", "m1", carol.did, "again"), parents=fork)  # target-rank
    return "Two moderators purge one channel concurrently: one replacement wins.", s


def ownership_transfer() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob)
    s.write(alice, SetRole(bob.did, Rank.ADMIN))
    s.write(alice, SetRole(bob.did, Rank.OWNER))
    s.write(alice, SetRole(bob.did, Rank.MEMBER))  # target-rank: alice is an admin now
    s.write(bob, SetRole(alice.did, Rank.MEMBER))
    s.write(alice, Leave())
    return "The owner hands ownership over and becomes an admin; the new owner demotes them.", s


def malformed() -> tuple[str, Space]:
    s = Space(alice)
    members(s, bob)
    good = s.write(bob, SetDescription("x")).wire.decode()
    s.raw(good.replace('{"op":', '{ "op":').encode())  # not-canonical
    s.raw(good.replace('"type"', '"time":1,"type"').encode())  # not-canonical (duplicate)
    s.raw(b'{"op":{"v":1.0},"sig":""}')  # not-canonical
    s.raw(b"[1,2")  # not-json
    s.raw(b'{"op":{},"sig":"","x":1}')  # bad-shape
    s.raw(good.replace('"type":"set-description"', '"type":"set-topic"').encode())
    s.raw(good.replace('"v":1', '"v":2').encode())  # bad-version
    s.raw(good.replace('"author":"did:key:', '"author":"key:').encode())  # bad-did
    s.raw(good.replace('"description":"x",', '"description":"x","extra":true,').encode())
    other = Space(alice, nonce="other")
    s.raw(other.write(alice, SetDescription("elsewhere")).wire)  # wrong-space
    s.raw(other.ops[0].wire)  # wrong-space: another space's create
    s.write(bob, SetDescription("x" * 2000))  # the largest description fits (rank, though)
    s.raw(good.replace('"description":"x"', '"description":"' + "x" * 16_400 + '"').encode())
    plc = "did:plc:" + "a" * 24  # unknown-key: no lookup for it in the corpus
    s.raw(sign_op(Op(s.id, Did(plc), (s.id,), s.clock + 1, NO_INVITE), bob.signer).wire)
    actor = actor_for(s.id, bob.did, "n")
    s.raw(sign_op(Op(s.id, alice.did, (s.id,), s.clock + 1, BindActor(actor, "n")),
                  alice.signer).wire)  # fmt: skip  # bad-actor: bob's actor id
    parents = tuple(sorted({s.id, *(f"{i:064x}" for i in range(16))}))
    s.raw(good.replace('"parents":[', '"parents":[' + ",".join(
        f'"{p}"' for p in parents if p < s.id) + ",").encode())  # fmt: skip
    return "Malformed ops: each refused at the boundary with its reason.", s


def random_concurrent(seed: int) -> Callable[[], tuple[str, Space | tuple[str, list[bytes]]]]:
    def make() -> tuple[str, Space | tuple[str, list[bytes]]]:
        h = history(seed, 40, 3, sign=True)
        assert h.signed is not None
        return (
            f"Random concurrent history (tests/spaces/gen.py, seed {seed}): three partitioned "
            "replicas of owner, admins, moderators, members and outsiders.",
            (h.space, [s.wire for s in h.signed]),
        )

    return make


def purge_heavy(seed: int) -> Callable[[], tuple[str, Space | tuple[str, list[bytes]]]]:
    def make() -> tuple[str, Space | tuple[str, list[bytes]]]:
        h = history(seed, 40, 4, sign=True, purges=0.25)
        assert h.signed is not None
        return (
            f"Random history where the owner and admins keep removing staff on stale branches "
            f"(tests/spaces/gen.py, seed {seed}, purges 0.25): revocations over two rounds.",
            (h.space, [s.wire for s in h.signed]),
        )

    return make


SCENARIOS: dict[str, Callable[[], tuple[str, object]]] = {
    "create-only": create_only,
    "every-op-kind": every_op_kind,
    "rank-rules": rank_rules,
    "mutual-demotion": mutual_demotion,
    "ban-vs-promotion": ban_vs_promotion,
    "kick-vs-leave": kick_vs_leave,
    "demoted-moderator-redaction": demoted_moderator_redaction,
    "invites": invites,
    "knock-approve-deny": knock_approve_deny,
    "stamps": stamps,
    "bad-signatures": bad_signatures,
    "unknown-parents": unknown_parents,
    "forged-escalation": forged_escalation,
    "backdated-ops": backdated_ops,
    "revocation-chain": revocation_chain,
    "backdated-against-staff": backdated_against_staff,
    "actors-and-clock": actors_and_clock,
    "purge-race": purge_race,
    "ownership-transfer": ownership_transfer,
    "malformed": malformed,
    **{f"random-{seed}": random_concurrent(seed) for seed in (1, 2, 3, 4)},
    **{f"purges-{seed}": purge_heavy(seed) for seed in (14, 38)},
}


def expect(space: str, wires: list[bytes]) -> dict[str, object]:
    """What the Python implementation makes of `wires` delivered in the listed order."""
    log = AuthorityLog(OpId(space))
    refused: list[dict[str, object]] = []
    for i, w in enumerate(wires):
        try:
            log.add(w)
        except OpError as e:
            refused.append({"index": i, "reason": e.reason})
    return {"refused": refused, "state": log.state.to_json()}


def build(name: str) -> str:
    description, made = SCENARIOS[name]()
    if isinstance(made, Space):
        space, wires = made.id, made.wires
    else:
        space, wires = made  # type: ignore[misc]
    doc = {
        "name": name,
        "description": description,
        "space": space,
        "ops": [w.decode() for w in wires],
        "expect": expect(space, wires),
    }
    # Sanity: the JSON form is canonical-encodable (no Python-only types).
    canonical(doc["expect"])  # type: ignore[arg-type]
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a file differs")
    args = parser.parse_args()
    CORPUS.mkdir(exist_ok=True)
    stale = []
    for name in SCENARIOS:
        path = CORPUS / f"{name}.json"
        text = build(name)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("stale corpus files:", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
