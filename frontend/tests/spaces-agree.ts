// The TypeScript side of tests/spaces/test_ts_agrees.py: the Python suite writes op
// sets with what Python makes of them, `tests/run-ts.mjs` runs `agree` over them under
// Node, and the Python test asserts there is no mismatch. Not a Vitest file (no
// `.test.ts`): it runs only when the Python test calls it.

import {
  AuthorityLog,
  canonicalText,
  encodeInviteToken,
  OpError,
  opFromJson,
  parseCanonical,
  parseInviteToken,
  parseOp,
  Resolver,
} from "../src/lib/spaces";
import { ed25519 } from "@noble/curves/ed25519.js";
import { actorFor, newInvite, SpaceAuthority } from "../src/lib/spaces";
import type { Op, OpId } from "../src/lib/spaces";
import { encodeEd25519Multibase } from "../src/lib/spaces/didkey";
import { hex, opIdOf, unhex, utf8Bytes } from "../src/lib/spaces/encoding";
import { ed25519VerifyStrict } from "../src/lib/spaces/signing";

export interface History {
  space: string;
  /** each op's canonical unsigned JSON text (what the id hashes) */
  ops: string[];
  /** Python's op ids, in the same order */
  ids: string[];
  /** Python's state, canonical JSON text */
  state: string;
}

export interface SignedSet {
  space: string;
  wires: string[];
  refused: { index: number; reason: string }[];
  state: string;
  /** log.since(heads) after all wires: the wire texts Python gives, in its order */
  since: { heads: string[]; wires: string[] }[];
}

export interface TokenCase {
  text: string;
  /** null: refused (bad-invite-token); else the token re-encoded */
  token: string | null;
}

export interface ParseCase {
  hex: string;
  /** null: Python parsed it, into an op with id `id` */
  reason: string | null;
  id: string | null;
}

export interface SignatureCase {
  name: string;
  key: string;
  message: string;
  sig: string;
  ok: boolean;
}

export interface AgreeInput {
  histories: History[];
  signed: SignedSet[];
  parse: ParseCase[];
  signatures: SignatureCase[];
  tokens: TokenCase[];
}

export interface Mismatch {
  kind: string;
  index: number;
  detail: string;
}

export interface AgreeOutput {
  checked: Record<string, number>;
  mismatches: Mismatch[];
  /** ops the TypeScript side wrote and signed, for Python to verify and resolve */
  written: { space: string; wires: string[]; seeds: string[]; state: string };
}

/** A space run through SpaceAuthority.write: every kind of op the PWA will write. */
function writeSpace(): AgreeOutput["written"] {
  const people = [1, 2, 3, 4, 5].map((n) => {
    const seed = new Uint8Array(32).fill(0x40 + n);
    return { seed, did: "did:key:" + encodeEd25519Multibase(ed25519.getPublicKey(seed)) };
  });
  const [owner, admin, mod, member, knocker] = people;
  const t0 = 1_780_000_000_000;
  const seeds: string[] = [];
  const { authority: a } = SpaceAuthority.create(
    owner.did,
    owner.seed,
    { publicName: "Ω garden", privateName: "\u2028\"quoted\"\n", joinPolicy: "open", nonce: "n-1" },
    {},
    t0,
  );
  seeds.push(hex(owner.seed));
  const w = (p: (typeof people)[number], body: Parameters<SpaceAuthority["write"]>[2], dt: number) => {
    seeds.push(hex(p.seed));
    return a.write(p.did, p.seed, body, t0 + dt);
  };
  for (const [i, p] of [admin, mod, member].entries()) w(p, { type: "join" }, 10 + i);
  w(owner, { type: "set-role", target: admin.did, role: "admin" }, 20);
  w(admin, { type: "set-role", target: mod.did, role: "moderator" }, 21);
  w(admin, { type: "set-join-policy", joinPolicy: "approval" }, 22);
  const knock = w(knocker, { type: "knock", note: "let me in 🙂" }, 23);
  w(mod, { type: "approve", request: knock.id, ticket: true }, 24);
  const { body } = newInvite({ maxUses: 2, expires: t0 + 1e6, seed: new Uint8Array(32).fill(9) });
  const invite = w(admin, body, 25);
  w(admin, { type: "revoke-invite", invite: invite.id }, 26);
  w(member, { type: "bind-actor", actor: actorFor(a.space, member.did, "phone"), nonce: "phone" }, 27);
  w(mod, { type: "redact", channel: "chan-1", message: "m-1", target: member.did, reason: "spam" }, 28);
  w(mod, { type: "purge", channel: "chan-1", replacement: "chan-2", reason: "" }, 29);
  w(mod, { type: "kick", target: knocker.did, reason: "bye" }, 30);
  w(mod, { type: "ban", target: member.did, reason: "spam" }, 31);
  w(owner, { type: "set-stamp-cost", join: 0, firstPost: 3 }, 32);
  w(owner, { type: "set-name", publicName: "garden", privateName: "garden (members)" }, 33);
  w(owner, { type: "set-description", description: "d".repeat(2000) }, 34);
  w(admin, { type: "leave" }, 35);
  w(mod, { type: "unban", target: member.did }, 36);
  const wires = [...a.log].map((b) => new TextDecoder().decode(b));
  return { space: a.space, wires, seeds, state: canonicalText(a.state.toJson()) };
}

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  const random = rng(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function firstDifference(a: string, b: string): string {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return `at ${i}: TS …${a.slice(Math.max(0, i - 80), i + 120)}… / Python …${b.slice(Math.max(0, i - 80), i + 120)}…`;
}

const reasonOf = (e: unknown): string => {
  if (e instanceof OpError) return e.reason;
  throw e;
};

/** Check every case; returns the counts and the first mismatches (at most 20). */
export function agree(input: AgreeInput): AgreeOutput {
  const mismatches: Mismatch[] = [];
  const checked: Record<string, number> = {
    histories: 0,
    deliveries: 0,
    signed: 0,
    since: 0,
    parse: 0,
    signatures: 0,
    tokens: 0,
  };
  const miss = (kind: string, index: number, detail: string) => {
    if (mismatches.length < 20) mismatches.push({ kind, index, detail });
  };

  input.histories.forEach((h, index) => {
    const ops: [OpId, Op][] = [];
    for (let i = 0; i < h.ops.length; i++) {
      const bytes = utf8Bytes(h.ops[i]);
      const id = opIdOf(bytes);
      if (id !== h.ids[i]) miss("op-id", index, `op ${i}: ${id} != ${h.ids[i]}`);
      ops.push([id, opFromJson(parseCanonical(bytes))]);
    }
    const orders: { name: string; order: [OpId, Op][]; readEach: boolean }[] = [
      { name: "listed", order: ops, readEach: false },
      { name: "reversed, read after each", order: [...ops].reverse(), readEach: true },
      { name: "shuffled, read after each", order: shuffled(ops, index + 1), readEach: true },
      { name: "shuffled", order: shuffled(ops, 1000 + index), readEach: false },
    ];
    for (const { name, order, readEach } of orders) {
      const r = new Resolver(h.space);
      for (const [id, op] of order) {
        r.add(id, op);
        if (readEach) void r.state;
      }
      const got = canonicalText(r.state.toJson());
      if (got !== h.state) miss("state", index, `${name}: ${firstDifference(got, h.state)}`);
      checked.deliveries++;
    }
    checked.histories++;
  });

  input.signed.forEach((s, index) => {
    const log = new AuthorityLog(s.space);
    const refused: { index: number; reason: string }[] = [];
    s.wires.forEach((w, i) => {
      try {
        log.add(w);
      } catch (e) {
        refused.push({ index: i, reason: reasonOf(e) });
      }
    });
    const got = JSON.stringify(refused);
    if (got !== JSON.stringify(s.refused)) miss("refused", index, `${got} != ${JSON.stringify(s.refused)}`);
    const state = canonicalText(log.state.toJson());
    if (state !== s.state) miss("signed-state", index, firstDifference(state, s.state));
    const decoder = new TextDecoder();
    for (const c of s.since) {
      const got = log.since(c.heads).map((w) => decoder.decode(w));
      if (JSON.stringify(got) !== JSON.stringify(c.wires)) {
        miss("since", index, `heads ${c.heads.join(",")}: TS ${got.length} ops, Python ${c.wires.length}`);
      }
      checked.since++;
    }
    checked.signed++;
  });

  input.parse.forEach((c, index) => {
    let reason: string | null = null;
    let id: string | null = null;
    try {
      id = parseOp(unhex(c.hex)).id;
    } catch (e) {
      reason = reasonOf(e);
    }
    if (reason !== c.reason || id !== c.id) {
      miss("parse", index, `${c.hex.slice(0, 400)}: TS ${reason ?? id}, Python ${c.reason ?? c.id}`);
    }
    checked.parse++;
  });

  input.signatures.forEach((c, index) => {
    const ok = ed25519VerifyStrict(unhex(c.key), unhex(c.message), unhex(c.sig));
    if (ok !== c.ok) miss("signature", index, `${c.name}: TS ${ok}, libsodium ${c.ok}`);
    checked.signatures++;
  });

  input.tokens.forEach((c, index) => {
    let token: string | null = null;
    try {
      token = encodeInviteToken(parseInviteToken(c.text));
    } catch (e) {
      if (reasonOf(e) !== "bad-invite-token") throw e;
    }
    if (token !== c.token) miss("token", index, `${JSON.stringify(c.text)}: TS ${token}, Python ${c.token}`);
    checked.tokens++;
  });

  return { checked, mismatches, written: writeSpace() };
}
