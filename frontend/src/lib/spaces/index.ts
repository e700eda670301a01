// Space authority for the PWA: signed ops, their resolution into a state, and the
// log that keeps them. The TypeScript twin of hearth/spaces/ (docs/spaces.md is
// the specification; tests/spaces/corpus/ checks both implementations alike).
//
// Module map: encoding (canonical JSON, ids), didkey (Ed25519 did:key),
// ops (typed ops, parseOp), signing (strict Ed25519, signOp), invites (invite
// tokens), stamps (proof of work), rules (rank rules), resolve (Resolver),
// state (SpaceState), log (AuthorityLog).
//
// What the PWA calls (the TypeScript side of docs/spaces.md "Plug-in points"):
// `SpaceAuthority` below, or the pieces it is made of.

import { OpError } from "./errors";
import type { RefusalReason } from "./errors";
import { AuthorityLog } from "./log";
import type { LogOptions } from "./log";
import type { Body, Create, Did, Op, OpId, Rank, SignedOp } from "./ops";
import { signOp } from "./signing";
import type { SpaceState } from "./state";

export { actorFor, canonical, canonicalText, parseCanonical } from "./encoding";
export type { Json, JsonObject } from "./encoding";
export { OpError } from "./errors";
export type { RefusalReason } from "./errors";
export { encodeInviteToken, joinWithToken, newInvite, parseInviteToken } from "./invites";
export type { InviteToken } from "./invites";
export { AuthorityLog, DEFAULT_LIMITS } from "./log";
export type { LogLimits, LogOptions } from "./log";
export { opBytes, opFromJson, opToJson, parseOp, Rank, RANK_OF_ROLE, ROLE_OF_RANK } from "./ops";
export type { Body, Did, JoinPolicy, Op, OpId, OpType, RoleName, SignedOp } from "./ops";
export { Resolver } from "./resolve";
export type { RuleReason } from "./rules";
export { keysFor, noOtherKeys, signInvite, signOp, verifyOp } from "./signing";
export type { KeyLookup } from "./signing";
export { Access, SpaceState } from "./state";
export type { BanRecord, InviteRecord, JoinRequest, Member } from "./state";

/** The answer to `SpaceAuthority.add`: the op is kept, or refused at the boundary and why. */
export type AddResult = { ok: true; id: OpId } | { ok: false; reason: RefusalReason; detail: string };

/**
 * One space's authority as the PWA holds it: feed it ops as they arrive (from the
 * syncserver, peers or the browser's cache), ask it questions. An op kept but not
 * in effect (a rank rule, an unknown parent) is in `rejected` with its reason, for
 * the space settings' "why is this op not in effect".
 */
export class SpaceAuthority {
  readonly log: AuthorityLog;

  constructor(
    readonly space: OpId,
    options: LogOptions = {},
  ) {
    this.log = new AuthorityLog(space, options);
  }

  /**
   * A new space: `author` (Ed25519 seed `seed`) signs its `create` op. Returns the
   * authority (holding that op) and the op to publish; the space id is its id.
   */
  static create(
    author: Did,
    seed: Uint8Array,
    body: Omit<Create, "type">,
    options: LogOptions = {},
    now: number = Date.now(),
  ): { authority: SpaceAuthority; signed: SignedOp } {
    const op: Op = { space: null, author, parents: [], time: Math.floor(now), body: { type: "create", ...body } };
    const signed = signOp(op, seed);
    const authority = new SpaceAuthority(signed.id, options);
    authority.log.addSigned(signed);
    return { authority, signed };
  }

  /** Verify and keep one op (wire bytes or text). Never throws for bad input. */
  add(data: Uint8Array | string): AddResult {
    try {
      return { ok: true, id: this.log.add(data) };
    } catch (e) {
      if (e instanceof OpError) return { ok: false, reason: e.reason, detail: e.detail };
      throw e;
    }
  }

  /** The current state (read-only; re-read after each `add`). */
  get state(): SpaceState {
    return this.log.state;
  }

  /** op id -> reason, for every kept op that did not take effect. */
  get rejected(): ReadonlyMap<OpId, string> {
    return this.log.state.rejected;
  }

  /** The last refusals at the boundary: op id (or `sha256:<hex>` of unparsable bytes) -> error. */
  get refused(): ReadonlyMap<string, OpError> {
    return this.log.refused;
  }

  mayRead(did: Did | null): boolean {
    return this.log.state.mayRead(did);
  }

  mayWrite(did: Did | null): boolean {
    return this.log.state.mayWrite(did);
  }

  mayWriteAs(did: Did | null, actor: string): boolean {
    return this.log.state.mayWriteAs(did, actor);
  }

  /** Who bound an Automerge actor id (see docs/spaces.md on what that proves). */
  actorDid(actor: string): Did | null {
    return this.log.state.actorDid(actor);
  }

  rankOf(did: Did | null): Rank {
    return this.log.state.rankOf(did);
  }

  /** Parents for the next op, and op ids to ask peers for. */
  get heads(): OpId[] {
    return this.log.heads;
  }

  missing(): Set<OpId> {
    return this.log.missing();
  }

  /**
   * Write, sign and keep a new op by `author` (whose Ed25519 seed is `seed`) following
   * every current head (plus `refs`, ops the body names, e.g. an invite or a request).
   * `time` is `max(now, the parents' times)`, as the spec asks of writers. Returns the
   * signed op to send, or throws OpError if this log refuses it.
   */
  write(
    author: Did,
    seed: Uint8Array,
    body: Exclude<Body, Create>,
    refs: OpId[] = [],
    now: number = Date.now(),
  ): SignedOp {
    const parents = [...new Set([...this.heads, ...refs])].sort();
    let time = Math.floor(now);
    for (const p of parents) time = Math.max(time, this.log.op(p)?.time ?? 0);
    const op: Op = { space: this.space, author, parents, time, body };
    const signed = signOp(op, seed);
    this.log.addSigned(signed);
    return signed;
  }
}
