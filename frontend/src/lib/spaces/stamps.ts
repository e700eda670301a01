/**
 * Proof-of-work stamps for joining a space and for a member's first post: the
 * TypeScript twin of hearth/spaces/stamps.py, byte for byte (same challenge
 * bytes, same Argon2id output, same stamp strings, same reason codes; checked
 * against tests/spaces/stamp_vectors.json). Specification: docs/spaces.md, "Stamps".
 *
 * Wire form: `hs1.<purpose>.<window>.<did tag>.<space tag>.<nonce>`.
 * Work: Argon2id(password = challenge, salt = nonce, t=1, m=1 MiB, p=1, 32 bytes),
 * worth = leading zero bits of the output. Making a stamp of `bits` takes 2**bits
 * evaluations on average (~10 ms each with @noble/hashes in a browser or Node,
 * about 15x the native Python figure: bench/stamps.py); verifying takes one.
 *
 * `makeStamp` is async and yields to the event loop every `sliceMs` so the UI
 * stays responsive; give it an AbortSignal to cancel and `onProgress` to show
 * how far it got.
 */
import { argon2id } from "@noble/hashes/argon2.js";
import { sha256 } from "@noble/hashes/sha2.js";

export const STAMP_DOMAIN = "hearth-stamp-v1\n";
export const ARGON2 = { t: 1, m: 1024, p: 1, dkLen: 32 } as const;
export const NONCE_BYTES = 16;
export const WINDOW_MS = 3_600_000;
export const GRACE_MS = 3_600_000;
export const SKEW_MS = 300_000;
export const MAX_COST_BITS = 64;
export const MAX_STAMP_CHARS = 160;
const VERIFY_CACHE = 4096;

export type Purpose = "join" | "first-post";
export type StampReason =
  | "stamp-missing"
  | "stamp-malformed"
  | "stamp-wrong-purpose"
  | "stamp-wrong-did"
  | "stamp-wrong-space"
  | "stamp-future"
  | "stamp-expired"
  | "stamp-too-cheap"
  | "stamp-replayed";

export class StampError extends Error {
  constructor(
    readonly reason: StampReason,
    message: string,
  ) {
    super(`${reason}: ${message}`);
    this.name = "StampError";
  }
}

export interface Stamp {
  readonly purpose: Purpose;
  readonly window: number;
  readonly didTag: string;
  readonly spaceTag: string;
  readonly nonce: Uint8Array;
}

const STAMP_RE =
  /^hs1\.(join|first-post)\.(0|[1-9][0-9]{0,15})\.([0-9a-f]{16})\.([0-9a-f]{16})\.([0-9a-f]{32})$/;
const enc = new TextEncoder();

export function toHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

function fromHex(h: string): Uint8Array {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function encodeStamp(s: Stamp): string {
  return ["hs1", s.purpose, String(s.window), s.didTag, s.spaceTag, toHex(s.nonce)].join(".");
}

/** The stamp in `text`, or StampError("stamp-malformed"); never throws anything else. */
export function parseStamp(text: unknown): Stamp {
  if (typeof text !== "string" || text.length > MAX_STAMP_CHARS) {
    throw new StampError("stamp-malformed", "a stamp is a string of at most 160 characters");
  }
  const m = STAMP_RE.exec(text);
  if (m === null) {
    throw new StampError("stamp-malformed", "not hs1.<purpose>.<window>.<tag>.<tag>.<nonce>");
  }
  const window = Number(m[2]);
  if (!Number.isSafeInteger(window)) throw new StampError("stamp-malformed", "window out of range");
  return { purpose: m[1] as Purpose, window, didTag: m[3], spaceTag: m[4], nonce: fromHex(m[5]) };
}

/** The 16-hex tag of a DID or a space id carried in a stamp. */
export function stampTag(value: string): string {
  return toHex(sha256(enc.encode(value)).subarray(0, 8));
}

export function windowOf(timeMs: number): number {
  return Math.floor(timeMs / WINDOW_MS);
}

/** Domain, then the canonical JSON of the binding (keys already in sorted order). */
export function challenge(did: string, space: string, purpose: Purpose, window: number): Uint8Array {
  return enc.encode(STAMP_DOMAIN + JSON.stringify({ did, purpose, space, window }));
}

export function argon2(chal: Uint8Array, nonce: Uint8Array): Uint8Array {
  return argon2id(chal, nonce, ARGON2);
}

export function leadingZeroBits(d: Uint8Array): number {
  let n = 0;
  for (const b of d) {
    if (b === 0) {
      n += 8;
      continue;
    }
    return n + Math.clz32(b) - 24;
  }
  return n;
}

const cache = new Map<string, number>();

/** Leading zero bits of one evaluation (memoised, so re-resolving a log is cheap). */
export function worth(chal: Uint8Array, nonce: Uint8Array): number {
  const key = toHex(chal) + "/" + toHex(nonce);
  let w = cache.get(key);
  if (w === undefined) {
    w = leadingZeroBits(argon2(chal, nonce));
    if (cache.size >= VERIFY_CACHE) cache.delete(cache.keys().next().value as string);
    cache.set(key, w);
  }
  return w;
}

export interface MakeOptions {
  /** 8 bytes starting the nonces; random by default, so two stamps in a window differ. */
  seed?: Uint8Array;
  signal?: AbortSignal;
  /** Called after each slice: attempts so far, and the expected count (2**bits). */
  onProgress?: (attempts: number, expected: number) => void;
  /** Longest run of work between two yields to the event loop (default 25 ms). */
  sliceMs?: number;
}

const macrotask = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** Search a stamp worth `costBits` for the window of `now` (ms). Rejects with the
 * signal's reason when aborted. */
export async function makeStamp(
  did: string,
  space: string,
  purpose: Purpose,
  costBits: number,
  now: number,
  opts: MakeOptions = {},
): Promise<Stamp> {
  if (!Number.isInteger(costBits) || costBits < 0 || costBits > MAX_COST_BITS) {
    throw new RangeError(`cost must be 0..${MAX_COST_BITS} bits`);
  }
  const seed = opts.seed ?? crypto.getRandomValues(new Uint8Array(8));
  if (seed.length !== 8) throw new RangeError("seed must be 8 bytes");
  const sliceMs = opts.sliceMs ?? 25;
  opts.signal?.throwIfAborted();
  const window = windowOf(now);
  const chal = challenge(did, space, purpose, window);
  const nonce = new Uint8Array(NONCE_BYTES);
  nonce.set(seed);
  const view = new DataView(nonce.buffer);
  let sliceStart = performance.now();
  for (let counter = 0; ; counter++) {
    view.setUint32(8, Math.floor(counter / 2 ** 32));
    view.setUint32(12, counter >>> 0);
    if (leadingZeroBits(argon2(chal, nonce)) >= costBits) {
      return { purpose, window, didTag: stampTag(did), spaceTag: stampTag(space), nonce };
    }
    if (performance.now() - sliceStart >= sliceMs) {
      opts.onProgress?.(counter + 1, 2 ** costBits);
      await macrotask();
      opts.signal?.throwIfAborted();
      sliceStart = performance.now();
    }
  }
}

/** Check a stamp for `did` in `space` at `now` (ms); throw StampError if it does not
 * do. Returns the parsed stamp, or null when no stamp is required (any stamp, even a
 * malformed one, then does). Replays are the caller's to refuse. */
export function verifyStamp(
  stamp: Stamp | string | null | undefined,
  did: string,
  space: string,
  purpose: Purpose,
  requiredBits: number,
  now: number,
): Stamp | null {
  if (requiredBits <= 0) return null;
  if (stamp === null || stamp === undefined) {
    throw new StampError("stamp-missing", `a ${purpose} stamp of ${requiredBits} bits is required`);
  }
  const s = typeof stamp === "string" ? parseStamp(stamp) : stamp;
  if (s.purpose !== purpose) {
    throw new StampError("stamp-wrong-purpose", `stamp is for ${s.purpose}, not ${purpose}`);
  }
  if (s.didTag !== stampTag(did)) {
    throw new StampError("stamp-wrong-did", `stamp was made for another DID than ${did}`);
  }
  if (s.spaceTag !== stampTag(space)) {
    throw new StampError("stamp-wrong-space", "stamp was made for another space");
  }
  const start = s.window * WINDOW_MS;
  if (now < start - SKEW_MS) throw new StampError("stamp-future", `stamp window starts at ${start}, after ${now}`);
  if (now >= start + WINDOW_MS + GRACE_MS) {
    throw new StampError("stamp-expired", `stamp window ended at ${start + WINDOW_MS}`);
  }
  const got = worth(challenge(did, space, purpose, s.window), s.nonce);
  if (got < requiredBits) {
    throw new StampError("stamp-too-cheap", `stamp is worth ${got} bits, ${requiredBits} required`);
  }
  return s;
}

/** What stamp costs need from a space state (./state.ts's SpaceState has it). */
export interface StampState {
  readonly space: string;
  readonly stampJoin: number;
  readonly stampFirstPost: number;
  readonly members: ReadonlyMap<string, { readonly ticket: boolean }>;
}

/** Bits a stamp from `did` for `purpose` must be worth (0: none). Ticket holders
 * (approved with a ticket, invited, the owner) skip first-post stamps. */
export function stampRequired(state: StampState, did: string, purpose: Purpose): number {
  if (purpose === "join") return state.stampJoin;
  return state.members.get(did)?.ticket === true ? 0 : state.stampFirstPost;
}

/** The authority log's check of an op's stamp (log_stamp_reason in Python; the rules'
 * "stamp check" in docs/spaces.md): null if it does (and it is then recorded in
 * `used`, the resolution's set of used stamps), else the reason code. */
export function logStampReason(
  state: StampState,
  did: string,
  purpose: Purpose,
  text: string | undefined,
  time: number,
  used: Set<string>,
): StampReason | null {
  let s: Stamp | null;
  try {
    s = verifyStamp(text, did, state.space, purpose, stampRequired(state, did, purpose), time);
  } catch (e) {
    if (e instanceof StampError) return e.reason;
    throw e;
  }
  if (s !== null) {
    const key = `${did} ${encodeStamp(s)}`;
    if (used.has(key)) return "stamp-replayed";
    used.add(key);
  }
  return null;
}

/** Stamps already presented outside the log (first posts), each kept until its window
 * has expired; at `capacity` the oldest goes (as ReplayCache in Python). */
export class ReplayCache {
  private readonly seen = new Map<string, number>();

  constructor(readonly capacity = 100_000) {
    if (capacity < 1) throw new RangeError("capacity must be at least 1");
  }

  get size(): number {
    return this.seen.size;
  }

  /** Record a verified `stamp` as used; StampError("stamp-replayed") if it was. */
  use(stamp: Stamp, did: string, space: string, now: number): void {
    const key = `${space} ${did} ${encodeStamp(stamp)}`;
    const expiry = this.seen.get(key);
    if (expiry !== undefined && now < expiry) throw new StampError("stamp-replayed", "this stamp was already used");
    this.seen.delete(key);
    while (this.seen.size >= this.capacity) this.seen.delete(this.seen.keys().next().value as string);
    this.seen.set(key, (stamp.window + 1) * WINDOW_MS + GRACE_MS);
  }
}

/** A member's first post (carried outside the log): throws StampError unless `did`
 * needs no stamp or `text` is a fresh first-post stamp for `now`, not seen before. */
export function checkFirstPost(state: StampState, did: string, text: string | null | undefined, now: number, cache: ReplayCache): void {
  const s = verifyStamp(text, did, state.space, "first-post", stampRequired(state, did, "first-post"), now);
  if (s !== null) cache.use(s, did, state.space, now);
}
