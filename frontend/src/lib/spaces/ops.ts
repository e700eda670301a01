// Typed authority-log ops and `parseOp`: bytes in, a `SignedOp` or an OpError
// (docs/spaces.md, "Wire form" and "Parsing: the order of checks"; mirrors
// hearth/spaces/ops.py, including the order of checks, so both give the same
// reason for the same bytes).
//
// parseOp checks syntax only (sizes, types, field rules, a bind-actor's actor
// id); signatures are checked by signing.ts, authority by resolve.ts.
// Cost: linear in the op's size, which is bounded before parsing.

import { decodeEd25519Multibase, encodeEd25519Multibase } from "./didkey";
import { actorFor, canonical, canonicalText, opIdOf, parseCanonical, unhex, utf8Length } from "./encoding";
import type { Json, JsonObject } from "./encoding";
import { OpError } from "./errors";

/** 64 lowercase hex: the SHA-256 of an op's canonical bytes. */
export type OpId = string;
/** A DID, as the op format allows it (see DID_RE). */
export type Did = string;

export const VERSION = 1;
export const MAX_OP_BYTES = 16_384;
export const MAX_PARENTS = 16;
export const MAX_NAME_BYTES = 100;
export const MAX_TEXT_BYTES = 500;
export const MAX_DESCRIPTION_BYTES = 2_000;
export const MAX_STAMP_BYTES = 1_024;
export const MAX_DID_BYTES = 256;
export const MAX_STAMP_BITS = 64;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

const DID_RE = /^did:[a-z]+:[A-Za-z0-9._:%-]*[A-Za-z0-9._-]$/;
const ID_RE = /^[0-9a-f]{64}$/;
const TOKEN_RE = /^[\x21-\x7e]{1,128}$/;
const SIG_RE = /^[0-9a-f]{128}$/;
const ACTOR_RE = /^[0-9a-f]{32}$/;

/** owner (4) > admin (3) > moderator (2) > member (1) > not a member (0). */
export const Rank = { NONE: 0, MEMBER: 1, MODERATOR: 2, ADMIN: 3, OWNER: 4 } as const;
export type Rank = (typeof Rank)[keyof typeof Rank];
export type RoleName = "owner" | "admin" | "moderator" | "member";
export const RANK_OF_ROLE: Readonly<Record<RoleName, Exclude<Rank, 0>>> = { owner: 4, admin: 3, moderator: 2, member: 1 };
export const ROLE_OF_RANK: Readonly<Record<Exclude<Rank, 0>, RoleName>> = {
  4: "owner",
  3: "admin",
  2: "moderator",
  1: "member",
};

export type JoinPolicy = "open" | "approval" | "invite-only";
const POLICIES: readonly string[] = ["open", "approval", "invite-only"];

// The bodies, one per type; field names are the wire's. Optional fields are
// absent when unused (never null).
export interface Create { type: "create"; publicName: string; privateName: string; joinPolicy: JoinPolicy; nonce: string }
export interface Invite { type: "invite"; key: string; expires?: number; maxUses?: number }
export interface RevokeInvite { type: "revoke-invite"; invite: OpId }
export interface Join { type: "join"; invite?: OpId; inviteSig?: string; stamp?: string }
export interface Knock { type: "knock"; note: string; stamp?: string }
export interface Approve { type: "approve"; request: OpId; ticket: boolean }
export interface Deny { type: "deny"; request: OpId; reason: string }
export interface SetRole { type: "set-role"; target: Did; role: RoleName }
export interface Kick { type: "kick"; target: Did; reason: string }
export interface Ban { type: "ban"; target: Did; reason: string }
export interface Unban { type: "unban"; target: Did }
export interface Redact { type: "redact"; channel: string; message: string; target: Did; reason: string }
export interface Purge { type: "purge"; channel: string; replacement: string; reason: string }
export interface SetName { type: "set-name"; publicName: string; privateName: string }
export interface SetJoinPolicy { type: "set-join-policy"; joinPolicy: JoinPolicy }
export interface SetStampCost { type: "set-stamp-cost"; join: number; firstPost: number }
export interface SetDescription { type: "set-description"; description: string }
export interface Leave { type: "leave" }
export interface BindActor { type: "bind-actor"; actor: string; nonce: string }

export type Body =
  | Create
  | Invite
  | RevokeInvite
  | Join
  | Knock
  | Approve
  | Deny
  | SetRole
  | Kick
  | Ban
  | Unban
  | Redact
  | Purge
  | SetName
  | SetJoinPolicy
  | SetStampCost
  | SetDescription
  | Leave
  | BindActor;

export type OpType = Body["type"];

/** An unsigned op: the header every op has, and its type's body. */
export interface Op {
  /** null only for `create`: the space id is the create op's id. */
  readonly space: OpId | null;
  readonly author: Did;
  /** Sorted, unique. */
  readonly parents: readonly OpId[];
  /** ms since the epoch, the author's clock. */
  readonly time: number;
  readonly body: Body;
}

export interface SignedOp {
  readonly id: OpId;
  readonly op: Op;
  /** 64-byte Ed25519 signature over signingInput(opBytes). */
  readonly sig: Uint8Array;
  /** The exact canonical wire bytes. */
  readonly wire: Uint8Array;
}

// The wire form is canonical: `{"op":` + op + `,"sig":"` + 128 hex + `"}`.
const OP_START = '{"op":'.length;
const OP_TAIL = ',"sig":""}'.length + 128;

/** The canonical bytes of the unsigned op (what is hashed and signed), sliced from the wire. */
export function opBytesOf(signed: SignedOp): Uint8Array {
  return signed.wire.subarray(OP_START, signed.wire.length - OP_TAIL);
}

// --- to JSON -------------------------------------------------------------------

export function opToJson(op: Op): JsonObject {
  const out: JsonObject = { v: VERSION, author: op.author, parents: [...op.parents], time: op.time };
  if (op.space !== null) out.space = op.space;
  for (const [k, v] of Object.entries(op.body)) {
    if (v !== undefined) out[k] = v as Json;
  }
  return out;
}

export function opBytes(op: Op): Uint8Array {
  return canonical(opToJson(op));
}

/** The wire bytes of `op` with its signature. */
export function encodeSigned(op: Op, sig: Uint8Array): Uint8Array {
  return canonical({ op: opToJson(op), sig: Array.from(sig, (b) => b.toString(16).padStart(2, "0")).join("") });
}

// --- from JSON -----------------------------------------------------------------

type Check<T> = (name: string, v: Json) => T;

/** Reads the fields of one JSON object, each at most once; `done` refuses leftovers. */
class Fields {
  private readonly rest: Map<string, Json>;

  constructor(obj: JsonObject) {
    this.rest = new Map(Object.entries(obj));
  }

  take<T>(name: string, check: Check<T>): T {
    if (!this.rest.has(name)) throw new OpError("bad-field", `missing field '${name}'`);
    const v = this.rest.get(name) as Json;
    this.rest.delete(name);
    return check(name, v);
  }

  maybe<T>(name: string, check: Check<T>): T | undefined {
    if (!this.rest.has(name)) return undefined;
    const v = this.rest.get(name) as Json;
    this.rest.delete(name);
    return check(name, v);
  }

  done(): void {
    if (this.rest.size) throw new OpError("bad-field", `unknown field '${[...this.rest.keys()].sort()[0]}'`);
  }
}

const isObject = (v: Json): v is JsonObject => typeof v === "object" && !Array.isArray(v);

const text =
  (limit: number): Check<string> =>
  (name, v) => {
    if (typeof v !== "string" || utf8Length(v) > limit) {
      throw new OpError("bad-field", `${name} must be a string of at most ${limit} bytes`);
    }
    return v;
  };

const pattern =
  (rx: RegExp, what: string): Check<string> =>
  (name, v) => {
    if (typeof v !== "string" || !rx.test(v)) throw new OpError("bad-field", `${name} must be ${what}`);
    return v;
  };

const token = pattern(TOKEN_RE, "1-128 printable ASCII characters");
const opId = pattern(ID_RE, "an op id (64 lowercase hex)");

const did: Check<Did> = (name, v) => {
  if (typeof v !== "string" || v.length > MAX_DID_BYTES || !DID_RE.test(v)) {
    throw new OpError("bad-did", `${name} is not a DID`);
  }
  return v;
};

const int =
  (lo: number, hi: number): Check<number> =>
  (name, v) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) {
      throw new OpError("bad-field", `${name} must be an integer in [${lo}, ${hi}]`);
    }
    return v;
  };

const bool: Check<boolean> = (name, v) => {
  if (typeof v !== "boolean") throw new OpError("bad-field", `${name} must be a boolean`);
  return v;
};

const policy: Check<JoinPolicy> = (name, v) => {
  if (typeof v !== "string" || !POLICIES.includes(v)) {
    throw new OpError("bad-field", `${name} must be open, approval or invite-only`);
  }
  return v as JoinPolicy;
};

const role: Check<RoleName> = (name, v) => {
  if (typeof v !== "string" || !Object.hasOwn(RANK_OF_ROLE, v)) {
    throw new OpError("bad-field", `${name} must be admin, moderator, member or owner`);
  }
  return v as RoleName;
};

const ed25519Key: Check<string> = (name, v) => {
  // A multibase Ed25519 key in its one canonical spelling (Python: key.multibase == v).
  const raw = typeof v === "string" ? decodeEd25519Multibase(v) : null;
  if (raw === null || encodeEd25519Multibase(raw) !== v) {
    throw new OpError("bad-field", `${name} must be a multibase Ed25519 public key`);
  }
  return v;
};

const name = text(MAX_NAME_BYTES);
const reason = text(MAX_TEXT_BYTES);
const stamp = text(MAX_STAMP_BYTES);
const time = int(0, MAX_SAFE);
const bits = int(0, MAX_STAMP_BITS);

/** Drops undefined optional fields, so a body has exactly the keys it travels with. */
function compact<T extends object>(body: T): T {
  for (const k of Object.keys(body) as (keyof T)[]) if (body[k] === undefined) delete body[k];
  return body;
}

function parseBody(kind: string, f: Fields, space: OpId | null, author: Did): Body {
  switch (kind) {
    case "create":
      return { type: kind, publicName: f.take("publicName", name), privateName: f.take("privateName", name),
               joinPolicy: f.take("joinPolicy", policy), nonce: f.take("nonce", token) }; // prettier-ignore
    case "invite":
      return compact({ type: kind, key: f.take("key", ed25519Key), expires: f.maybe("expires", time),
                       maxUses: f.maybe("maxUses", int(1, 1_000_000)) }); // prettier-ignore
    case "revoke-invite":
      return { type: kind, invite: f.take("invite", opId) };
    case "join": {
      const body = compact<Join>({ type: kind, invite: f.maybe("invite", opId),
                                   inviteSig: f.maybe("inviteSig", pattern(SIG_RE, "128 hex")),
                                   stamp: f.maybe("stamp", stamp) }); // prettier-ignore
      if ((body.invite === undefined) !== (body.inviteSig === undefined)) {
        throw new OpError("bad-field", "invite and inviteSig come together");
      }
      return body;
    }
    case "knock":
      return compact({ type: kind, note: f.take("note", reason), stamp: f.maybe("stamp", stamp) });
    case "approve":
      return { type: kind, request: f.take("request", opId), ticket: f.take("ticket", bool) };
    case "deny":
      return { type: kind, request: f.take("request", opId), reason: f.take("reason", reason) };
    case "set-role":
      return { type: kind, target: f.take("target", did), role: f.take("role", role) };
    case "kick":
    case "ban":
      return { type: kind, target: f.take("target", did), reason: f.take("reason", reason) };
    case "unban":
      return { type: kind, target: f.take("target", did) };
    case "redact":
      return { type: kind, channel: f.take("channel", token), message: f.take("message", token),
               target: f.take("target", did), reason: f.take("reason", reason) }; // prettier-ignore
    case "purge":
      return { type: kind, channel: f.take("channel", token), replacement: f.take("replacement", token),
               reason: f.take("reason", reason) }; // prettier-ignore
    case "set-name":
      return { type: kind, publicName: f.take("publicName", name), privateName: f.take("privateName", name) };
    case "set-join-policy":
      return { type: kind, joinPolicy: f.take("joinPolicy", policy) };
    case "set-stamp-cost":
      return { type: kind, join: f.take("join", bits), firstPost: f.take("firstPost", bits) };
    case "set-description":
      return { type: kind, description: f.take("description", text(MAX_DESCRIPTION_BYTES)) };
    case "leave":
      return { type: kind };
    case "bind-actor": {
      const body: BindActor = { type: kind, actor: f.take("actor", pattern(ACTOR_RE, "32 hex")),
                                nonce: f.take("nonce", token) }; // prettier-ignore
      if (space === null || actorFor(space, author, body.nonce) !== body.actor) {
        throw new OpError("bad-actor", "actor id is not derived from this space, DID and nonce");
      }
      return body;
    }
    default:
      throw new OpError("unknown-type", `unknown op type ${JSON.stringify(kind.slice(0, 40))}`);
  }
}

/** The typed op for a JSON value; throws OpError naming the first bad field. */
export function opFromJson(obj: Json, maxParents: number = MAX_PARENTS): Op {
  if (!isObject(obj)) throw new OpError("bad-shape", "op must be an object");
  const f = new Fields(obj);
  if (f.take("v", int(0, MAX_SAFE)) !== VERSION) throw new OpError("bad-version", `op version must be ${VERSION}`);
  const kind = f.take("type", text(64));
  const author = f.take("author", did);
  const t = f.take("time", time);
  const rawParents = f.take("parents", (_, v) => v);
  if (!Array.isArray(rawParents)) throw new OpError("bad-field", "parents must be a list of op ids");
  const parents = rawParents.map((p) => opId("parents", p));
  for (let i = 1; i < parents.length; i++) {
    if (!(parents[i - 1] < parents[i])) throw new OpError("bad-field", "parents must be sorted and unique");
  }
  if (parents.length > maxParents) {
    throw new OpError("too-many-parents", `an op names at most ${maxParents} parents`);
  }
  const space = f.maybe("space", opId) ?? null;
  if (kind === "create") {
    if (space !== null || parents.length) throw new OpError("bad-field", "create has no space and no parents");
  } else if (space === null || !parents.length) {
    throw new OpError("bad-field", "every op but create names its space and parents");
  }
  const body = parseBody(kind, f, space, author);
  f.done();
  return { space, author, parents, time: t, body };
}

export interface ParseLimits {
  maxBytes?: number;
  maxParents?: number;
}

/** Parse wire bytes into a `SignedOp` (signature not yet checked); throws OpError. */
export function parseOp(data: Uint8Array, limits: ParseLimits = {}): SignedOp {
  const maxBytes = limits.maxBytes ?? MAX_OP_BYTES;
  if (data.length > maxBytes) throw new OpError("too-large", `op is ${data.length} bytes, limit ${maxBytes}`);
  const wire = parseCanonical(data);
  const keys = isObject(wire) ? Object.keys(wire).sort() : [];
  if (!isObject(wire) || keys.length !== 2 || keys[0] !== "op" || keys[1] !== "sig") {
    throw new OpError("bad-shape", 'wire form is {"op": {...}, "sig": "<hex>"}');
  }
  const sig = wire.sig;
  if (typeof sig !== "string" || !SIG_RE.test(sig)) {
    throw new OpError("bad-field", "sig must be 128 lowercase hex (64 bytes)");
  }
  const op = opFromJson(wire.op, limits.maxParents ?? MAX_PARENTS);
  const id = opIdOf(data.subarray(OP_START, data.length - OP_TAIL));
  return { id, op, sig: unhex(sig), wire: data };
}

/** The canonical JSON text of an op (for display and tests). */
export const opText = (op: Op): string => canonicalText(opToJson(op));
