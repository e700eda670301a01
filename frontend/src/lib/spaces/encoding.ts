// Canonical JSON, op ids, signing inputs and actor ids (docs/spaces.md, "Encoding";
// mirrors hearth/spaces/encoding.py byte for byte).
//
// Canonical JSON is the subset JSON.stringify reproduces once object keys are
// sorted: objects, arrays, well-formed strings, booleans and integers within
// +-(2^53 - 1); no floats, no null, ASCII keys, no whitespace. Bytes are
// canonical iff they are UTF-8, parse as JSON (RFC 8259: NaN and Infinity are
// not JSON), hold only such values, and re-encode to the same bytes.
//
// Costs: JSON.parse plus one re-encode, linear in the size (callers bound it
// first); an op id is one SHA-256.

import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { OpError } from "./errors";

export type Json = string | number | boolean | Json[] | JsonObject;
export interface JsonObject {
  [key: string]: Json;
}

const OP_DOMAIN = "hearth-space-op-v1\n";
const INVITE_DOMAIN = "hearth-space-invite-v1\n";
const ACTOR_DOMAIN = "hearth-actor-v1\n";

const utf8 = new TextEncoder();
// fatal: refuse bad UTF-8 as Python's strict decode does; ignoreBOM: keep a BOM
// (Python keeps it too, and then it is not JSON).
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// In a /u regex a surrogate pair is one code point, so \p{Cs} matches only lone halves
// (and needs no lookbehind, which older Safari lacks).
const LONE_SURROGATE = /\p{Cs}/u;
const NON_ASCII = /[^\x00-\x7f]/;

export const utf8Bytes = (text: string): Uint8Array => utf8.encode(text);
export const utf8Length = (text: string): number => utf8.encode(text).length;

function encode(value: unknown): string {
  switch (typeof value) {
    case "string":
      if (LONE_SURROGATE.test(value)) throw new OpError("bad-value", "string holds a lone surrogate");
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isSafeInteger(value)) throw new OpError("bad-value", "number is not an integer within +-(2^53 - 1)");
      return JSON.stringify(value);
    case "object": {
      if (value === null) throw new OpError("bad-value", "null is not allowed in canonical JSON");
      if (Array.isArray(value)) return "[" + value.map(encode).join(",") + "]";
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj);
      for (const k of keys) {
        if (NON_ASCII.test(k)) throw new OpError("bad-value", "object keys must be ASCII strings");
      }
      keys.sort();
      return "{" + keys.map((k) => JSON.stringify(k) + ":" + encode(obj[k])).join(",") + "}";
    }
    default:
      throw new OpError("bad-value", `${typeof value} is not allowed in canonical JSON`);
  }
}

/** The canonical JSON text of `value`; throws OpError('bad-value') outside the subset. */
export function canonicalText(value: Json): string {
  return encode(value);
}

/** The canonical bytes of `value`; throws OpError('bad-value') outside the subset. */
export function canonical(value: Json): Uint8Array {
  return utf8.encode(encode(value));
}

/**
 * Parse `data` as canonical JSON; throws OpError with reason not-utf8, not-json or
 * not-canonical (in that order of checks). The caller must bound `data.length` first.
 */
export function parseCanonical(data: Uint8Array): Json {
  let text: string;
  try {
    text = strictUtf8.decode(data);
  } catch {
    throw new OpError("not-utf8", "op is not UTF-8");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new OpError("not-json", "op is not JSON");
  }
  let again: string;
  try {
    again = encode(value);
  } catch (e) {
    if (e instanceof OpError) throw new OpError("not-canonical", e.detail);
    // Nesting deep enough to exhaust the stack (docs/spaces.md: the one parse reason
    // that may differ from Python's, which gives up after several hundred levels).
    if (e instanceof RangeError) throw new OpError("not-json", "op is nested too deeply");
    throw e;
  }
  // Strict UTF-8 decoding is one-to-one, so comparing texts compares the bytes.
  if (again !== text) throw new OpError("not-canonical", "op is not in canonical JSON form");
  return value as Json;
}

/** Lowercase hex. */
export const hex = (bytes: Uint8Array): string => bytesToHex(bytes);

/** Bytes of lowercase or uppercase hex (callers validate the text first). */
export function unhex(text: string): Uint8Array {
  const out = new Uint8Array(text.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** The op id: lowercase hex SHA-256 of the canonical bytes of the unsigned op. */
export function opIdOf(opBytes: Uint8Array): string {
  return bytesToHex(sha256(opBytes));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** What the author signs: the domain prefix, then the op's canonical bytes. */
export function signingInput(opBytes: Uint8Array): Uint8Array {
  return concat(utf8.encode(OP_DOMAIN), opBytes);
}

/** What an invite key signs to admit `joiner` with the invite `inviteId`. */
export function inviteInput(inviteId: string, joiner: string): Uint8Array {
  return utf8.encode(INVITE_DOMAIN + inviteId + "\n" + joiner);
}

/** The Automerge actor id (32 lowercase hex) that `did` may bind in `space` with `nonce`. */
export function actorFor(space: string, did: string, nonce: string): string {
  return bytesToHex(sha256(utf8.encode(`${ACTOR_DOMAIN}${space}\n${did}\n${nonce}`)).subarray(0, 16));
}
