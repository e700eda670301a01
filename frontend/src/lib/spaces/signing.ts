// Signing ops and checking their signatures, with a pluggable key lookup
// (mirrors hearth/spaces/signing.py).
//
// A did:key author signs with the DID's own Ed25519 key; any other DID with a
// key the caller's `KeyLookup` returns (its keyserver signing keys, current and
// previous). The lookup is synchronous so the core stays pure: fetch and cache
// keys first (keys.ts `KeyDirectory`), then verify.
//
// Verification is libsodium's `crypto_sign_verify_detached`, which the Python
// side uses: S below the group order; the public key canonically encoded and
// not of small order; R not of small order; and the check is cofactorless,
// comparing the encoding of [S]B - [h]A with R byte for byte. @noble's own
// verify is cofactored (it would accept some signatures by keys with a torsion
// component that libsodium refuses), so the equation is computed here from
// @noble/curves' point arithmetic. Replicas must agree on every signature, or
// they would resolve different sets of ops.
//
// Cost (Node 20, 2-core machine): ~1.2 ms per signature for a key seen rarely;
// a key that has signed TABLE_AFTER ops gets a precomputed window table
// (~120 KiB, kept for the MAX_TABLES busiest keys), after which its checks take
// ~0.45 ms. Moderators and admins write most of a space's ops.

import { ed25519 } from "@noble/curves/ed25519.js";
import { sha512 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { decodeEd25519Multibase, ed25519KeyOfDid } from "./didkey";
import { inviteInput, opIdOf, signingInput, unhex } from "./encoding";
import { OpError } from "./errors";
import { encodeSigned, opBytes, opBytesOf } from "./ops";
import type { Did, Op, OpId, SignedOp } from "./ops";

/** The raw 32-byte Ed25519 keys that may sign for a DID that is not a did:key; empty when unknown. */
export type KeyLookup = (did: Did) => readonly Uint8Array[];

/** The default lookup: only did:key authors can be verified. */
export const noOtherKeys: KeyLookup = () => [];

const Point = ed25519.Point;
const L = Point.Fn.ORDER;

// Encodings of the points of small order, sign bit cleared, as libsodium's
// ge25519_has_small_order lists them: y = 0, 1, the two order-8 y's, p-1, p, p+1.
const SMALL_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

function hasSmallOrder(encoded: Uint8Array): boolean {
  const y = encoded.slice(0, 32);
  y[31] &= 0x7f;
  return SMALL_ORDER.includes(bytesToHex(y));
}

/** y below p = 2^255 - 19 (the sign bit aside), as libsodium's ge25519_is_canonical. */
function isCanonicalPoint(encoded: Uint8Array): boolean {
  if ((encoded[31] & 0x7f) !== 0x7f) return true;
  for (let i = 30; i > 0; i--) if (encoded[i] !== 0xff) return true;
  return encoded[0] < 0xed;
}

type EdPoint = ReturnType<typeof Point.fromBytes>;

const MAX_POINTS = 4096; // decoded keys kept (a decode is a square root, ~0.1 ms)
const TABLE_AFTER = 16; // a table costs about as much as 15 checks
const MAX_TABLES = 64;
const points = new Map<string, { point: EdPoint; uses: number }>();
const tables = new Map<string, EdPoint>(); // least recently used first

/** The decoded key, from the caches when possible; throws if it is no point. */
function keyPoint(publicKey: Uint8Array): EdPoint {
  const k = bytesToHex(publicKey);
  const table = tables.get(k);
  if (table !== undefined) {
    tables.delete(k);
    tables.set(k, table);
    return table;
  }
  let known = points.get(k);
  if (known === undefined) {
    if (points.size >= MAX_POINTS) points.clear();
    known = { point: Point.fromBytes(publicKey, false), uses: 0 };
    points.set(k, known);
  }
  if (++known.uses < TABLE_AFTER) return known.point;
  // A busy key: precompute its multiples once (a separate point object holds them).
  const point = Point.fromBytes(publicKey, false).precompute(6, false);
  points.delete(k);
  tables.set(k, point);
  if (tables.size > MAX_TABLES) tables.delete(tables.keys().next().value as string);
  return point;
}

function leNumber(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

/** Ed25519 verification with libsodium's rules (see the top of this file). */
export function ed25519VerifyStrict(publicKey: Uint8Array, message: Uint8Array, sig: Uint8Array): boolean {
  if (publicKey.length !== 32 || sig.length !== 64) return false;
  const r = sig.subarray(0, 32);
  const s = leNumber(sig.subarray(32));
  if (s >= L || hasSmallOrder(r)) return false;
  if (!isCanonicalPoint(publicKey) || hasSmallOrder(publicKey)) return false;
  let a: EdPoint;
  try {
    a = keyPoint(publicKey);
  } catch {
    return false;
  }
  const input = new Uint8Array(64 + message.length);
  input.set(r);
  input.set(publicKey, 32);
  input.set(message, 64);
  const h = leNumber(sha512(input)) % L;
  const check = Point.BASE.multiplyUnsafe(s).subtract(a.multiplyUnsafe(h));
  return bytesToHex(check.toBytes()) === bytesToHex(r);
}

/** The Ed25519 keys that may sign for `did`. */
export function keysFor(did: Did, lookup: KeyLookup = noOtherKeys): readonly Uint8Array[] {
  if (did.startsWith("did:key:")) {
    const key = ed25519KeyOfDid(did);
    return key ? [key] : [];
  }
  return lookup(did).filter((k) => k.length === 32);
}

/** Throw OpError('unknown-key' / 'bad-signature') unless the author signed `signed`. */
export function verifyOp(signed: SignedOp, lookup: KeyLookup = noOtherKeys): void {
  const author = signed.op.author;
  const keys = keysFor(author, lookup);
  if (!keys.length) throw new OpError("unknown-key", `no Ed25519 key known for ${author.slice(0, 80)}`);
  const message = signingInput(opBytesOf(signed));
  if (!keys.some((k) => ed25519VerifyStrict(k, message, signed.sig))) {
    throw new OpError("bad-signature", `signature does not match ${author.slice(0, 80)}`);
  }
}

/** Sign `op` with the author's 32-byte Ed25519 seed; the op as it travels. */
export function signOp(op: Op, seed: Uint8Array): SignedOp {
  const body = opBytes(op);
  const sig = ed25519.sign(signingInput(body), seed);
  return { id: opIdOf(body), op, sig, wire: encodeSigned(op, sig) };
}

/** The `inviteSig` of a join: the invite key (the link's secret seed) admits `joiner`. */
export function signInvite(inviteId: OpId, joiner: Did, inviteSeed: Uint8Array): string {
  return bytesToHex(ed25519.sign(inviteInput(inviteId, joiner), inviteSeed));
}

export function inviteSigOk(keyMultibase: string, inviteId: OpId, joiner: Did, sigHex: string): boolean {
  const key = decodeEd25519Multibase(keyMultibase);
  return key !== null && ed25519VerifyStrict(key, inviteInput(inviteId, joiner), unhex(sigHex));
}
