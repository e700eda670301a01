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
import { hex } from "./encoding";
import { MAX_PARENTS } from "./ops";
import type { Body, Create, Did, OpId, Rank, SignedOp } from "./ops";
import { signOp } from "./signing";
import type { SpaceState } from "./state";

export { AuthorKeys } from "./authorkeys";
export type { SigningKeySource } from "./authorkeys";
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
export { checkFirstPost, encodeStamp, makeStamp, parseStamp, ReplayCache, StampError, stampRequired, verifyStamp } from "./stamps";
export type { MakeOptions, Purpose, Stamp, StampReason } from "./stamps";
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
   * A new space: `author` (Ed25519 seed `seed`) signs its `create` op (a random nonce
   * unless given). Returns the authority (holding that op) and the op to publish;
   * the space id is its id. As Python's `writer.create_space`.
   */
  static create(
    author: Did,
    seed: Uint8Array,
    body: Omit<Create, "type" | "nonce"> & { nonce?: string },
    options: LogOptions = {},
    now: number = Date.now(),
  ): { authority: SpaceAuthority; signed: SignedOp } {
    const nonce = body.nonce ?? hex(crypto.getRandomValues(new Uint8Array(16)));
    const create: Create = { ...body, type: "create", nonce };
    const signed = signOp({ space: null, author, parents: [], time: Math.floor(now), body: create }, seed);
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
   * Write, sign and keep `author`'s next op (Ed25519 seed `seed`), as Python's
   * `writer.write`: parents are the ops `body` refers to, then the current heads
   * (all of them when they fit in 16; else the first ones by id - the next op picks
   * up the rest); time is `now`, or the latest parent's time if that is later.
   * Returns the signed op to send on; throws OpError if this log refuses it.
   */
  write(author: Did, seed: Uint8Array, body: Exclude<Body, Create>, now: number = Date.now()): SignedOp {
    const refs = references(body);
    const heads = this.heads.filter((h) => !refs.includes(h));
    const parents = [...new Set([...refs, ...heads.slice(0, Math.max(0, MAX_PARENTS - refs.length))])].sort();
    let time = Math.floor(now);
    for (const p of parents) time = Math.max(time, this.log.op(p)?.time ?? time);
    const signed = signOp({ space: this.space, author, parents, time, body }, seed);
    this.log.addSigned(signed);
    return signed;
  }
}

/** The ops a body refers to, which must be among its op's parents. */
export function references(body: Body): OpId[] {
  switch (body.type) {
    case "approve":
    case "deny":
      return [body.request];
    case "revoke-invite":
      return [body.invite];
    case "join":
      return body.invite === undefined ? [] : [body.invite];
    default:
      return [];
  }
}
