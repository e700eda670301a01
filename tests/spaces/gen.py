"""Random concurrent histories of a space, from a seed: several replicas (owner,
admins, moderators, members, outsiders) write ops on their own branches and now
and then learn each other's, so ops conflict the way partitioned people make them.

Used by the property tests (unsigned: the resolver does not check signatures)
and by make_corpus.py (signed, fixed seeds).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hearth.spaces.encoding import actor_for, op_id_of
from hearth.spaces.ops import (
    Approve,
    Ban,
    BindActor,
    Body,
    Create,
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
    SetRole,
    SetStampCost,
    SignedOp,
    Unban,
    op_bytes,
)
from hearth.spaces.signing import sign_op
from tests.spaces.world import T0, Person, person

NAMES = ["owner", "admin1", "admin2", "mod1", "mod2", "mem1", "mem2", "mem3", "out1", "out2"]
PEOPLE = {n: person(n) for n in NAMES}
SETUP_ROLES = {"admin1": Rank.ADMIN, "admin2": Rank.ADMIN, "mod1": Rank.MODERATOR,
               "mod2": Rank.MODERATOR}  # fmt: skip
INVITE_KEY = "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


@dataclass
class _Replica:
    known: set[OpId] = field(default_factory=set)
    named: set[OpId] = field(default_factory=set)  # every parent of a known op
    heads: set[OpId] = field(default_factory=set)

    def learn(self, op_id: OpId, op: Op) -> None:
        self.known.add(op_id)
        self.named.update(op.parents)
        self.heads.difference_update(op.parents)
        if op_id not in self.named:
            self.heads.add(op_id)

    def merge(self, other: _Replica) -> None:
        self.known |= other.known
        self.named |= other.named
        self.heads = {h for h in self.heads | other.heads if h not in self.named}


@dataclass
class History:
    space: OpId
    ops: list[tuple[OpId, Op]]
    signed: list[SignedOp] | None


def _body(rng: random.Random, space: OpId, who: Person, ops: list[tuple[OpId, Op]]) -> Body:
    target = PEOPLE[rng.choice(NAMES)].did
    kind = rng.randrange(16)
    if kind < 3:
        return SetRole(target, rng.choice([Rank.ADMIN, Rank.MODERATOR, Rank.MEMBER]))
    if kind == 3:
        return Kick(target, "k")
    if kind == 4:
        return Ban(target, "b")
    if kind == 5:
        return Unban(target)
    if kind == 6:
        return Redact("chan", f"m{rng.randrange(4)}", target, "")
    if kind == 7:
        return Leave()
    if kind == 8:
        return Join(None, None, None)
    if kind == 9:
        return Knock("hi", "stamp" if rng.random() < 0.5 else None)
    knocks = [i for i, op in ops if isinstance(op.body, Knock)]
    if kind == 10 and knocks:
        req = rng.choice(knocks)
        return Approve(req, rng.random() < 0.5) if rng.random() < 0.7 else Deny(req, "no")
    if kind == 11:
        return SetJoinPolicy(rng.choice(list(JoinPolicy)))
    if kind == 12:
        nonce = f"a{rng.randrange(3)}"
        return BindActor(actor_for(space, who.did, nonce), nonce)
    if kind == 13:
        return SetStampCost(rng.randrange(2), 0)
    if kind == 14:
        return Purge(f"c{rng.randrange(2)}", f"r{rng.randrange(9)}", "")
    invites = [i for i, op in ops if isinstance(op.body, Invite)]
    if invites and rng.random() < 0.5:
        return RevokeInvite(rng.choice(invites))
    if rng.random() < 0.5:
        return SetDescription(f"d{rng.randrange(5)}")
    return Invite(INVITE_KEY, None, 2)


def history(
    seed: int, n_ops: int, n_replicas: int, sign: bool = False, purges: float = 0.0
) -> History:
    """A setup prefix (create, everyone but outsiders joins, roles), then `n_ops`
    random ops written by `n_replicas` partitioned replicas that merge at random.

    `purges` > 0: that share of the ops are the owner or an admin removing an admin
    or moderator (demotion or kick) and the rest of the ops favour the staff, so
    revocations chain (several rounds). 0 keeps the histories (and the corpus) as
    they were."""
    rng = random.Random(seed)
    ops: list[tuple[OpId, Op]] = []
    signed: list[SignedOp] = []
    clock = T0
    owner = PEOPLE["owner"]
    space = OpId("")

    def emit(who: Person, body: Body, replica: _Replica) -> None:
        nonlocal clock, space
        clock += 1 + rng.randrange(1000)
        parents = tuple(sorted(replica.heads))
        op = Op(None if isinstance(body, Create) else space, who.did, parents, clock, body)
        if sign:
            s = sign_op(op, who.signer)
            signed.append(s)
            op_id = s.id
        else:
            op_id = OpId(op_id_of(op_bytes(op)))
        if isinstance(body, Create):
            space = op_id
        ops.append((op_id, op))
        replica.learn(op_id, op)

    base = _Replica()
    emit(owner, Create("s", "p", JoinPolicy.OPEN, f"n{seed}"), base)
    for name in NAMES[1:8]:
        emit(PEOPLE[name], Join(None, None, None), base)
    for name, rank in SETUP_ROLES.items():
        emit(owner, SetRole(PEOPLE[name].did, rank), base)
    replicas = [_Replica(set(base.known), set(base.named), set(base.heads))
                for _ in range(n_replicas)]  # fmt: skip
    for _ in range(n_ops):
        r = rng.randrange(n_replicas)
        if rng.random() < 0.15:
            replicas[r].merge(replicas[rng.randrange(n_replicas)])
            continue
        if purges and rng.random() < purges:
            who = PEOPLE[rng.choice(["owner", "admin1", "admin2"])]
            target = PEOPLE[rng.choice(["admin1", "admin2", "mod1", "mod2"])].did
            body: Body = SetRole(target, Rank.MEMBER) if rng.random() < 0.7 else Kick(target, "")
            emit(who, body, replicas[r])
            continue
        if purges:
            who = PEOPLE[rng.choice(NAMES[:5] * 2 + NAMES)]
        else:
            who = PEOPLE[rng.choice(NAMES)]
        emit(who, _body(rng, space, who, ops), replicas[r])
    return History(space, ops, signed if sign else None)
