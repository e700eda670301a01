// The rank rules: whether one op takes effect on the state, and what it changes
// (docs/spaces.md, "Ranks" and "What each op checks"; mirrors hearth/spaces/rules.py).
//
// `apply` is called by the resolver once per op, in the resolution order. It
// either changes the state and returns null, or leaves the state untouched and
// returns a stable reason code. An op that needs a rank is checked twice:
// against the author's rank in the accumulated state, and against `past`, the
// author's rank at the op's causal position.

import { Rank, RANK_OF_ROLE } from "./ops";
import type { Did, Join, Knock, Op, OpId, SetRole } from "./ops";
import { inviteSigOk } from "./signing";
import { logStampReason } from "./stamps";
import type { StampReason } from "./stamps";
import type { Member, SpaceState } from "./state";

/** Why an op in the set did not take effect (the state's `rejected`). */
export type RuleReason =
  | "not-member"
  | "rank"
  | "rank-not-seen"
  | "target-rank"
  | "self"
  | "target-not-member"
  | "already-member"
  | "banned"
  | "policy"
  | "already-pending"
  | StampReason
  | "invite-unknown"
  | "invite-revoked"
  | "invite-expired"
  | "invite-used-up"
  | "invite-bad-sig"
  | "owner-cannot-leave"
  | "actor-taken"
  | "request-unknown"
  | "request-not-pending"
  | "already-purged"
  | "not-banned"
  | "already-banned"
  | "revoked"
  | "clock"
  | "wrong-space"
  | "unknown-parent";

/** Called with (did, new rank) for every membership or rank change an op makes. */
export type OnRank = (did: Did, rank: Rank) => void;

function need(state: SpaceState, author: Did, past: Rank, rank: Rank): RuleReason | null {
  const now = state.rankOf(author);
  if (now === Rank.NONE) return "not-member";
  if (now < rank) return "rank";
  if (past < rank) return "rank-not-seen";
  return null;
}

function setMember(state: SpaceState, did: Did, member: Member | null, onRank: OnRank): void {
  if (member === null) {
    state.members.delete(did);
    onRank(did, Rank.NONE);
    return;
  }
  state.members.set(did, member);
  onRank(did, member.rank);
  // whoever becomes a member has no pending request any more
  for (const [rid, q] of [...state.requests]) if (q.did === did) state.requests.delete(rid);
}

function closeRequests(state: SpaceState, did: Did): void {
  for (const [rid, q] of [...state.requests]) if (q.did === did) state.requests.delete(rid);
}

/**
 * The rank an op's author must hold for it to take effect (0: none, e.g. a join).
 * The base of `reliedRank` (docs/spaces.md, "Resolution", step 4).
 */
export function neededRank(op: Op): Rank {
  const body = op.body;
  switch (body.type) {
    case "create":
    case "join":
    case "knock":
      return Rank.NONE;
    case "leave":
    case "bind-actor":
      return Rank.MEMBER;
    case "redact":
      return body.target === op.author ? Rank.MEMBER : Rank.MODERATOR;
    case "approve":
    case "deny":
    case "kick":
    case "ban":
    case "unban":
    case "purge":
      return Rank.MODERATOR;
    case "set-role":
      return body.role === "owner" ? Rank.OWNER : Rank.ADMIN;
    default:
      return Rank.ADMIN;
  }
}

/**
 * The rank `op` relies on if it takes effect now (call it before `apply`): its
 * `neededRank`, or more when it acts on someone - one above the target's rank
 * (kick, ban, redacting another's message, set-role) and above the role it grants.
 * An accepted op is revoked when a concurrent op brings its author below this.
 */
export function reliedRank(state: SpaceState, op: Op): Rank {
  let need: number = neededRank(op);
  const body = op.body;
  if (body.type === "kick" || body.type === "ban" || body.type === "set-role" ||
      (body.type === "redact" && body.target !== op.author)) { // prettier-ignore
    need = Math.max(need, state.rankOf(body.target) + 1);
  }
  if (body.type === "set-role") need = Math.max(need, RANK_OF_ROLE[body.role] + 1);
  return Math.min(need, Rank.OWNER) as Rank;
}

/** Apply `op` (id `opId`) if the rules allow it; else return why not. */
export function apply(state: SpaceState, opId: OpId, op: Op, past: Rank, onRank: OnRank): RuleReason | null {
  const { body, author } = op;
  switch (body.type) {
    case "create":
      // The resolver admits exactly one create: the one whose id is the space id.
      state.owner = author;
      state.publicName = body.publicName;
      state.privateName = body.privateName;
      state.policy = body.joinPolicy;
      setMember(state, author, { rank: Rank.OWNER, ticket: true }, onRank);
      return null;
    case "join":
    case "knock":
      return admit(state, opId, op, body, onRank);
    case "leave":
      if (!state.isMember(author)) return "not-member";
      if (state.owner === author) return "owner-cannot-leave";
      setMember(state, author, null, onRank);
      return null;
    case "bind-actor": {
      if (!state.isMember(author)) return "not-member";
      const holder = state.actors.get(body.actor);
      if (holder !== undefined && holder !== author) return "actor-taken";
      state.actors.set(body.actor, author);
      return null;
    }
  }
  // The author's rank for every comparison: as low as either view says.
  const mine = Math.min(state.rankOf(author), past) as Rank;
  switch (body.type) {
    case "redact": {
      let why: RuleReason | null;
      if (body.target === author) {
        why = state.isMember(author) ? null : "not-member"; // anyone redacts their own messages
      } else {
        why = need(state, author, past, Rank.MODERATOR);
        if (why === null && state.rankOf(body.target) >= mine) why = "target-rank";
      }
      if (why === null) {
        let msgs = state.redactions.get(body.channel);
        if (!msgs) state.redactions.set(body.channel, (msgs = new Map()));
        if (!msgs.has(body.message)) msgs.set(body.message, opId); // a second redaction adds nothing
      }
      return why;
    }
    case "approve":
    case "deny": {
      const why = need(state, author, past, Rank.MODERATOR);
      if (why) return why;
      if (!op.parents.includes(body.request)) return "request-unknown";
      const req = state.requests.get(body.request);
      if (req === undefined) return "request-not-pending";
      state.requests.delete(body.request);
      if (body.type === "approve") setMember(state, req.did, { rank: Rank.MEMBER, ticket: body.ticket }, onRank);
      return null;
    }
    case "purge": {
      const why = need(state, author, past, Rank.MODERATOR);
      if (why) return why;
      if (state.purges.has(body.channel)) return "already-purged";
      state.purges.set(body.channel, body.replacement);
      return null;
    }
    case "kick":
    case "ban":
    case "unban": {
      const why = need(state, author, past, Rank.MODERATOR);
      if (why) return why;
      const target = body.target;
      if (target === author) return "self";
      if (body.type === "unban") {
        if (!state.bans.has(target)) return "not-banned";
        state.bans.delete(target);
        return null;
      }
      if (state.rankOf(target) >= mine) return "target-rank";
      if (body.type === "kick") {
        if (!state.isMember(target)) return "target-not-member";
        setMember(state, target, null, onRank);
        return null;
      }
      if (state.bans.has(target)) return "already-banned";
      state.bans.set(target, { reason: body.reason, by: author, op: opId });
      if (state.isMember(target)) setMember(state, target, null, onRank);
      closeRequests(state, target);
      return null;
    }
  }
  const why = need(state, author, past, Rank.ADMIN);
  if (why) return why;
  switch (body.type) {
    case "set-role":
      return setRole(state, author, body, mine, onRank);
    case "invite":
      state.invites.set(opId, {
        by: author,
        key: body.key,
        expires: body.expires ?? null,
        maxUses: body.maxUses ?? null,
        uses: 0,
        revoked: false,
      });
      return null;
    case "revoke-invite": {
      const inv = state.invites.get(body.invite);
      if (inv === undefined || !op.parents.includes(body.invite)) return "invite-unknown";
      if (inv.revoked) return "invite-revoked";
      inv.revoked = true;
      return null;
    }
    case "set-name":
      state.publicName = body.publicName;
      state.privateName = body.privateName;
      return null;
    case "set-join-policy":
      state.policy = body.joinPolicy;
      return null;
    case "set-stamp-cost":
      state.stampJoin = body.join;
      state.stampFirstPost = body.firstPost;
      return null;
    case "set-description":
      state.description = body.description;
      return null;
  }
}

function admit(state: SpaceState, opId: OpId, op: Op, body: Join | Knock, onRank: OnRank): RuleReason | null {
  const author = op.author;
  if (state.isMember(author)) return "already-member";
  if (state.isBanned(author)) return "banned";
  if (body.type === "knock") {
    if (state.policy !== "approval") return "policy";
    for (const q of state.requests.values()) if (q.did === author) return "already-pending";
    const why = logStampReason(state, author, "join", body.stamp, op.time, state.usedStamps);
    if (why !== null) return why;
    state.requests.set(opId, { did: author, note: body.note, time: op.time, stamp: body.stamp !== undefined });
    return null;
  }
  if (body.invite === undefined || body.inviteSig === undefined) {
    if (state.policy !== "open") return "policy";
    const why = logStampReason(state, author, "join", body.stamp, op.time, state.usedStamps);
    if (why !== null) return why;
    setMember(state, author, { rank: Rank.MEMBER, ticket: false }, onRank);
    return null;
  }
  const inv = state.invites.get(body.invite);
  if (inv === undefined || !op.parents.includes(body.invite)) return "invite-unknown";
  if (inv.revoked) return "invite-revoked";
  if (inv.expires !== null && op.time > inv.expires) return "invite-expired";
  if (inv.maxUses !== null && inv.uses >= inv.maxUses) return "invite-used-up";
  if (!inviteSigOk(inv.key, body.invite, author, body.inviteSig)) return "invite-bad-sig";
  inv.uses += 1;
  setMember(state, author, { rank: Rank.MEMBER, ticket: true }, onRank);
  return null;
}

function setRole(state: SpaceState, author: Did, body: SetRole, mine: Rank, onRank: OnRank): RuleReason | null {
  const target = body.target;
  if (target === author) return "self";
  const member = state.members.get(target);
  if (member === undefined) return "target-not-member";
  const role = RANK_OF_ROLE[body.role];
  if (role === Rank.OWNER) {
    if (mine !== Rank.OWNER) return "rank";
    state.owner = target;
    setMember(state, target, { rank: Rank.OWNER, ticket: member.ticket }, onRank);
    const me = state.members.get(author);
    setMember(state, author, { rank: Rank.ADMIN, ticket: me?.ticket ?? false }, onRank);
    return null;
  }
  if (member.rank >= mine) return "target-rank";
  if (role >= mine) return "rank";
  setMember(state, target, { rank: role, ticket: member.ticket }, onRank);
  return null;
}
