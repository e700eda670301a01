// Invite tokens: what an invite link carries instead of the bare space id
// (mirrors hearth/spaces/invites.py; docs/spaces.md, "Joining").
//
// An invite is an Ed25519 key pair made for the occasion. Its public key goes
// into the log in an `invite` op; the 32-byte seed goes into the token, and only
// there. Whoever holds the token signs their own DID with the invite key in
// their `join` op (`inviteSig`), so reading the log admits nobody.
//
// Token: `hsi1.<space id>.<invite op id>.<seed as base64url, no padding>`.

import { ed25519 } from "@noble/curves/ed25519.js";
import { base64url, base64urlDecode } from "../identity";
import { encodeEd25519Multibase } from "./didkey";
import { OpError } from "./errors";
import type { Did, Invite, Join, OpId } from "./ops";
import { signInvite } from "./signing";

const TOKEN_RE = /^hsi1\.([0-9a-f]{64})\.([0-9a-f]{64})\.([A-Za-z0-9_-]{43})$/;
// Python's str.strip() whitespace (str.isspace), which differs from String.trim's.
const PY_SPACE = "[\\t\\n\\v\\f\\r \\x1c-\\x1f\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const STRIP_RE = new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, "g");

export interface InviteToken {
  readonly space: OpId;
  readonly invite: OpId;
  /** 32 bytes: the invite key's Ed25519 seed */
  readonly seed: Uint8Array;
}

export function encodeInviteToken(token: InviteToken): string {
  return `hsi1.${token.space}.${token.invite}.${base64url(token.seed)}`;
}

/** The token in `text` (surrounding whitespace ignored); throws OpError('bad-invite-token'). */
export function parseInviteToken(text: string): InviteToken {
  const trimmed = text.replace(STRIP_RE, "");
  const m = TOKEN_RE.exec(trimmed);
  if (m === null) throw new OpError("bad-invite-token", "not an invite token (hsi1.<space>.<invite>.<seed>)");
  const token = { space: m[1], invite: m[2], seed: base64urlDecode(m[3]) };
  if (encodeInviteToken(token) !== trimmed) {
    throw new OpError("bad-invite-token", "invite token seed is not canonical base64url"); // one seed, one spelling
  }
  return token;
}

/**
 * A fresh invite: the `invite` op body to write (an admin's `SpaceAuthority.write`),
 * and the seed to keep for the token (`{space, invite: the op's id, seed}`).
 */
export function newInvite(
  options: { expires?: number; maxUses?: number; seed?: Uint8Array } = {},
): { body: Invite; seed: Uint8Array } {
  const seed = options.seed ?? crypto.getRandomValues(new Uint8Array(32));
  if (seed.length !== 32) throw new RangeError("an invite seed is 32 bytes");
  const body: Invite = { type: "invite", key: encodeEd25519Multibase(ed25519.getPublicKey(seed)) };
  if (options.expires !== undefined) body.expires = options.expires;
  if (options.maxUses !== undefined) body.maxUses = options.maxUses;
  return { body, seed };
}

/** The body of `joiner`'s join op with `token`; its parents must include `token.invite`. */
export function joinWithToken(token: InviteToken, joiner: Did, stamp?: string): Join {
  const body: Join = { type: "join", invite: token.invite, inviteSig: signInvite(token.invite, joiner, token.seed) };
  if (stamp !== undefined) body.stamp = stamp;
  return body;
}
