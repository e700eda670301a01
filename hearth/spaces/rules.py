"""The rank rules: whether one op takes effect on the state, and what it changes.

`apply` is called by the resolver once per op, in the resolution order
(docs/spaces.md, "Resolution"). It either changes the state and returns
`None`, or leaves the state untouched and returns a stable reason code.

An op that needs a rank is checked twice: against the author's rank in the
accumulated state (`state.rank_of`) and against `past` - the author's rank
after the last accepted rank change of theirs that is in the op's causal past.
So a demotion ordered first wins over a concurrent action by the demoted, and
a promotion the author had not seen cannot validate their op afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

from hearth.spaces.ops import (
    Approve,
    Ban,
    BindActor,
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
    SetName,
    SetRole,
    SetStampCost,
    Unban,
)
from hearth.spaces.signing import invite_sig_ok
from hearth.spaces.stamps import Purpose, log_stamp_reason
from hearth.spaces.state import BanRecord, InviteRecord, JoinRequest, Member, SpaceState
from hearth.types import Did

# Called with (did, new rank) for every membership or rank change an op makes,
# so the resolver can keep each DID's rank history.
OnRank = Callable[[Did, Rank], None]


def _need(state: SpaceState, author: Did, past: Rank, rank: Rank) -> str | None:
    now = state.rank_of(author)
    if now is Rank.NONE:
        return "not-member"
    if now < rank:
        return "rank"
    if past < rank:
        return "rank-not-seen"
    return None


def _set_member(state: SpaceState, did: Did, member: Member | None, on_rank: OnRank) -> None:
    if member is None:
        state.members.pop(did, None)
        on_rank(did, Rank.NONE)
    else:
        state.members[did] = member
        on_rank(did, member.rank)
        # whoever becomes a member has no pending request any more
        for rid in [r for r, q in state.requests.items() if q.did == did]:
            del state.requests[rid]


def needed_rank(op: Op) -> Rank:
    """The rank an op's author must hold for it to take effect (0: none, e.g. a join).

    A resolution revokes an accepted op whose author is brought below this rank by
    a concurrent op (docs/spaces.md, "Revocation")."""
    body = op.body
    if isinstance(body, Create | Join | Knock):
        return Rank.NONE
    if isinstance(body, Leave | BindActor):
        return Rank.MEMBER
    if isinstance(body, Redact):
        return Rank.MEMBER if body.target == op.author else Rank.MODERATOR
    if isinstance(body, Approve | Deny | Kick | Ban | Unban | Purge):
        return Rank.MODERATOR
    if isinstance(body, SetRole) and body.role is Rank.OWNER:
        return Rank.OWNER
    return Rank.ADMIN


def relied_rank(state: SpaceState, op: Op) -> Rank:
    """The rank `op` relies on if it takes effect now (call it before `apply`): its
    `needed_rank`, or more when it acts on someone - one above the target's rank
    (kick, ban, redacting another's message, set-role) and above the role it grants.

    An accepted op is revoked when a concurrent op brings its author below this."""
    need: int = needed_rank(op)
    body = op.body
    if isinstance(body, Kick | Ban | SetRole) or (
        isinstance(body, Redact) and body.target != op.author
    ):
        need = max(need, state.rank_of(body.target) + 1)
    if isinstance(body, SetRole):
        need = max(need, body.role + 1)
    return Rank(min(need, Rank.OWNER))


def apply(state: SpaceState, op_id: OpId, op: Op, past: Rank, on_rank: OnRank) -> str | None:
    """Apply `op` (id `op_id`) if the rules allow it; else return why not."""
    body, author = op.body, op.author
    if isinstance(body, Create):
        # The resolver admits exactly one create: the one whose id is the space id.
        state.owner = author
        state.public_name, state.private_name = body.public_name, body.private_name
        state.policy = body.join_policy
        _set_member(state, author, Member(Rank.OWNER, True), on_rank)
        return None
    if isinstance(body, Join | Knock):
        return _admit(state, op_id, op, on_rank)
    if isinstance(body, Leave):
        if not state.is_member(author):
            return "not-member"
        if state.owner == author:
            return "owner-cannot-leave"
        _set_member(state, author, None, on_rank)
        return None
    if isinstance(body, BindActor):
        if not state.is_member(author):
            return "not-member"
        holder = state.actors.get(body.actor)
        if holder is not None and holder != author:
            return "actor-taken"
        state.actors[body.actor] = author
        return None
    # The author's rank for every comparison: as low as either view says.
    mine = min(state.rank_of(author), past)
    if isinstance(body, Redact):
        if body.target == author:  # anyone redacts their own messages
            why = None if state.is_member(author) else "not-member"
        else:
            why = _need(state, author, past, Rank.MODERATOR)
            if why is None and state.rank_of(body.target) >= mine:
                why = "target-rank"
        if why is None:
            msgs = state.redactions.setdefault(body.channel, {})
            msgs.setdefault(body.message, op_id)  # a second redaction adds nothing
        return why
    if isinstance(body, Approve | Deny | Kick | Ban | Unban | Purge):
        why = _need(state, author, past, Rank.MODERATOR)
        return why or _moderate(state, op_id, op, mine, on_rank)
    why = _need(state, author, past, Rank.ADMIN)
    return why or _administer(state, op_id, op, mine, on_rank)


def _admit(state: SpaceState, op_id: OpId, op: Op, on_rank: OnRank) -> str | None:
    body, author = op.body, op.author
    assert isinstance(body, Join | Knock)
    if state.is_member(author):
        return "already-member"
    if state.is_banned(author):
        return "banned"
    if isinstance(body, Knock):
        if state.policy is not JoinPolicy.APPROVAL:
            return "policy"
        if any(q.did == author for q in state.requests.values()):
            return "already-pending"
        why = log_stamp_reason(state, author, Purpose.JOIN, body.stamp, op.time, state.used_stamps)
        if why is not None:
            return why
        state.requests[op_id] = JoinRequest(author, body.note, op.time, body.stamp is not None)
        return None
    if body.invite is None:
        if state.policy is not JoinPolicy.OPEN:
            return "policy"
        why = log_stamp_reason(state, author, Purpose.JOIN, body.stamp, op.time, state.used_stamps)
        if why is not None:
            return why
        _set_member(state, author, Member(Rank.MEMBER, False), on_rank)
        return None
    inv = state.invites.get(body.invite)
    if inv is None or body.invite not in op.parents:
        return "invite-unknown"
    if inv.revoked:
        return "invite-revoked"
    if inv.expires is not None and op.time > inv.expires:
        return "invite-expired"
    if inv.max_uses is not None and inv.uses >= inv.max_uses:
        return "invite-used-up"
    assert body.invite_sig is not None
    if not invite_sig_ok(inv.key, body.invite, author, body.invite_sig):
        return "invite-bad-sig"
    inv.uses += 1
    _set_member(state, author, Member(Rank.MEMBER, True), on_rank)
    return None


def _moderate(state: SpaceState, op_id: OpId, op: Op, mine: Rank, on_rank: OnRank) -> str | None:
    body, author = op.body, op.author
    if isinstance(body, Approve | Deny):
        if body.request not in op.parents:
            return "request-unknown"
        req = state.requests.get(body.request)
        if req is None:
            return "request-not-pending"
        del state.requests[body.request]
        if isinstance(body, Approve):
            _set_member(state, req.did, Member(Rank.MEMBER, body.ticket), on_rank)
        return None
    if isinstance(body, Purge):
        if body.channel in state.purges:
            return "already-purged"
        state.purges[body.channel] = body.replacement
        return None
    assert isinstance(body, Kick | Ban | Unban)
    target = body.target
    if target == author:
        return "self"
    if isinstance(body, Unban):
        if target not in state.bans:
            return "not-banned"
        del state.bans[target]
        return None
    if state.rank_of(target) >= mine:
        return "target-rank"
    if isinstance(body, Kick):
        if not state.is_member(target):
            return "target-not-member"
        _set_member(state, target, None, on_rank)
        return None
    if target in state.bans:
        return "already-banned"
    state.bans[target] = BanRecord(body.reason, author, op_id)
    if state.is_member(target):
        _set_member(state, target, None, on_rank)
    for rid in [r for r, q in state.requests.items() if q.did == target]:
        del state.requests[rid]
    return None


def _administer(state: SpaceState, op_id: OpId, op: Op, mine: Rank, on_rank: OnRank) -> str | None:
    body, author = op.body, op.author
    if isinstance(body, SetRole):
        return _set_role(state, author, body, mine, on_rank)
    if isinstance(body, Invite):
        state.invites[op_id] = InviteRecord(author, body.key, body.expires, body.max_uses)
        return None
    if isinstance(body, RevokeInvite):
        inv = state.invites.get(body.invite)
        if inv is None or body.invite not in op.parents:
            return "invite-unknown"
        if inv.revoked:
            return "invite-revoked"
        inv.revoked = True
        return None
    if isinstance(body, SetName):
        state.public_name, state.private_name = body.public_name, body.private_name
    elif isinstance(body, SetJoinPolicy):
        state.policy = body.join_policy
    elif isinstance(body, SetStampCost):
        state.stamp_join, state.stamp_first_post = body.join, body.first_post
    elif isinstance(body, SetDescription):
        state.description = body.description
    else:  # pragma: no cover - every body type is handled above
        raise AssertionError(type(body).__name__)
    return None


def _set_role(
    state: SpaceState, author: Did, body: SetRole, mine: Rank, on_rank: OnRank
) -> str | None:
    target = body.target
    if target == author:
        return "self"
    member = state.members.get(target)
    if member is None:
        return "target-not-member"
    if body.role is Rank.OWNER:
        if mine is not Rank.OWNER:
            return "rank"
        state.owner = target
        _set_member(state, target, Member(Rank.OWNER, member.ticket), on_rank)
        me = state.members[author]
        _set_member(state, author, Member(Rank.ADMIN, me.ticket), on_rank)
        return None
    if member.rank >= mine:
        return "target-rank"
    if body.role >= mine:
        return "rank"
    _set_member(state, target, Member(body.role, member.ticket), on_rank)
    return None
