// The PWA's API over the authority log (SpaceAuthority), beyond what the shared
// corpus checks: writing ops, answers instead of exceptions, access snapshots.

import { ed25519 } from "@noble/curves/ed25519.js";
import { describe, expect, it } from "vitest";
import {
  actorFor,
  AuthorKeys,
  AuthorityLog,
  canonicalText,
  parseCanonical,
  OpError,
  encodeInviteToken,
  joinWithToken,
  newInvite,
  parseInviteToken,
  signInvite,
  SpaceAuthority,
} from "../src/lib/spaces";
import { sha512 } from "@noble/hashes/sha2.js";
import { KeyDirectory } from "../src/lib/keys";
import { encodeEd25519Multibase } from "../src/lib/spaces/didkey";
import { FakeWorld, KEYSERVER, newKeys } from "./fake-world";
import { ed25519VerifyStrict } from "../src/lib/spaces/signing";

const T0 = 1_780_000_000_000;

function person(n: number) {
  const seed = new Uint8Array(32).fill(n);
  return { seed, did: "did:key:" + encodeEd25519Multibase(ed25519.getPublicKey(seed)) };
}
const [alice, bob, carol, mallory] = [1, 2, 3, 4].map(person);

function space(policy: "open" | "approval" | "invite-only" = "open") {
  return SpaceAuthority.create(
    alice.did,
    alice.seed,
    { publicName: "Hearth", privateName: "Hearth (members)", joinPolicy: policy, nonce: "n0" },
    {},
    T0,
  );
}

describe("SpaceAuthority", () => {
  it("creates a space, admits, ranks and kicks, and says who lost access", () => {
    const { authority: a, signed } = space();
    expect(a.space).toBe(signed.id);
    expect(a.rankOf(alice.did)).toBe(4);
    a.write(bob.did, bob.seed, { type: "join" }, T0 + 1);
    a.write(carol.did, carol.seed, { type: "join" }, T0 + 2);
    a.write(alice.did, alice.seed, { type: "set-role", target: carol.did, role: "moderator" }, T0 + 3);
    expect(a.mayWrite(bob.did)).toBe(true);
    expect(a.rankOf(carol.did)).toBe(2);

    const before = a.state.access();
    a.write(carol.did, carol.seed, { type: "ban", target: bob.did, reason: "spam" }, T0 + 4);
    expect(a.mayRead(bob.did)).toBe(false);
    expect(a.mayRead(mallory.did)).toBe(true); // open space: anyone not banned reads
    expect(before.lostRead(a.state.access())).toEqual(new Set([bob.did]));
    expect(before.lostWrite(a.state.access())).toEqual(new Set([bob.did]));
    expect(a.state.bans.get(bob.did)?.reason).toBe("spam");
    expect(a.rejected.size).toBe(0);
  });

  it("another replica fed the written ops in any order reaches the same state", () => {
    const { authority: a } = space();
    for (const p of [bob, carol]) a.write(p.did, p.seed, { type: "join" }, T0 + 1);
    a.write(alice.did, alice.seed, { type: "set-role", target: bob.did, role: "admin" }, T0 + 2);
    a.write(bob.did, bob.seed, { type: "set-description", description: "ours" }, T0 + 3);
    const wires = [...a.log].reverse();
    const b = new SpaceAuthority(a.space);
    for (const w of wires) expect(b.add(w).ok).toBe(true);
    expect(canonicalText(b.state.toJson())).toBe(canonicalText(a.state.toJson()));
    expect(b.state.description).toBe("ours");
  });

  it("answers bad input with a reason instead of throwing, and remembers it", () => {
    const { authority: a } = space();
    expect(a.add("{}")).toMatchObject({ ok: false, reason: "bad-shape" });
    expect(a.add(new Uint8Array([0xff]))).toMatchObject({ ok: false, reason: "not-utf8" });
    const other = space("approval").authority; // same author and nonce, other policy: another space
    const foreign = other.write(alice.did, alice.seed, { type: "set-description", description: "x" }, T0 + 1);
    expect(a.add(foreign.wire)).toMatchObject({ ok: false, reason: "wrong-space" });
    expect([...a.refused.values()].map((e) => e.reason)).toEqual(["bad-shape", "not-utf8", "wrong-space"]);
  });

  it("keeps an op the rules refuse, and says why", () => {
    const { authority: a } = space();
    a.write(bob.did, bob.seed, { type: "join" }, T0 + 1);
    const kick = a.write(bob.did, bob.seed, { type: "kick", target: alice.did, reason: "coup" }, T0 + 2);
    expect(a.rejected.get(kick.id)).toBe("rank");
    expect(a.rankOf(alice.did)).toBe(4);
  });

  it("writes an op no earlier than its parents' time", () => {
    const { authority: a } = space();
    const join = a.write(bob.did, bob.seed, { type: "join" }, T0 - 5_000); // a clock behind
    expect(join.op.time).toBe(T0);
    expect(a.rejected.size).toBe(0);
  });

  it("binds actors and admits with an invite", () => {
    const { authority: a } = space("invite-only");
    const inviteSeed = new Uint8Array(32).fill(9);
    const key = encodeEd25519Multibase(ed25519.getPublicKey(inviteSeed));
    const invite = a.write(alice.did, alice.seed, { type: "invite", key, maxUses: 1 }, T0 + 1);
    const inviteSig = signInvite(invite.id, bob.did, inviteSeed);
    a.write(bob.did, bob.seed, { type: "join", invite: invite.id, inviteSig }, T0 + 2);
    expect(a.state.members.get(bob.did)).toEqual({ rank: 1, ticket: true });
    expect(a.state.invites.get(invite.id)?.uses).toBe(1);
    const stolen = a.write(carol.did, carol.seed, { type: "join", invite: invite.id, inviteSig }, T0 + 3);
    expect(a.rejected.get(stolen.id)).toBe("invite-used-up");

    const actor = actorFor(a.space, bob.did, "laptop");
    a.write(bob.did, bob.seed, { type: "bind-actor", actor, nonce: "laptop" }, T0 + 4);
    expect(a.actorDid(actor)).toBe(bob.did);
    expect(a.mayWriteAs(bob.did, actor)).toBe(true);
    expect(a.mayWriteAs(alice.did, actor)).toBe(false);
  });

  it("keeps object keys that JavaScript treats specially as plain keys", () => {
    const { authority: a } = space();
    a.write(alice.did, alice.seed, { type: "redact", channel: "__proto__", message: "constructor", target: alice.did, reason: "" }, T0 + 1); // prettier-ignore
    expect(a.state.isRedacted("__proto__", "constructor")).toBe(true);
    expect(canonicalText(a.state.toJson())).toContain('"redactions":{"__proto__":["constructor"]}');
  });
});

describe("invite tokens and log exchange", () => {
  it("an invite token admits its holder, and only as the DID that signed", () => {
    const { authority: a } = space("invite-only");
    const { body, seed } = newInvite({ maxUses: 5, seed: new Uint8Array(32).fill(7) });
    const invite = a.write(alice.did, alice.seed, body, T0 + 1);
    const text = encodeInviteToken({ space: a.space, invite: invite.id, seed });
    const token = parseInviteToken(` ${text}\n`);
    expect(token.space).toBe(a.space);
    const join = a.write(bob.did, bob.seed, joinWithToken(token, bob.did), T0 + 2);
    expect(a.rejected.has(join.id)).toBe(false);
    // Carol replays Bob's join body under her own DID: the signature names Bob.
    const replay = a.write(carol.did, carol.seed, joinWithToken(token, bob.did), T0 + 3);
    expect(a.rejected.get(replay.id)).toBe("invite-bad-sig");
    expect(() => parseInviteToken(text.slice(0, -1) + "B")).toThrowError(/bad-invite-token/);
    expect(() => parseInviteToken(a.space)).toThrowError(/bad-invite-token/);
  });

  it("since(heads) gives a peer exactly what it lacks, parents first", () => {
    const { authority: a } = space();
    const b = new SpaceAuthority(a.space);
    for (const w of a.log) b.add(w);
    for (const p of [bob, carol, mallory]) a.write(p.did, p.seed, { type: "join" }, T0 + 1);
    const missing = a.log.since(b.heads);
    expect(missing.length).toBe(3);
    for (const w of missing) expect(b.add(w).ok).toBe(true); // in order: nothing waits
    expect(b.log.pending.size).toBe(0);
    expect(canonicalText(b.state.toJson())).toBe(canonicalText(a.state.toJson()));
    expect(a.log.since(a.heads)).toEqual([]);
  });
});

describe("SpaceAuthority.write", () => {
  it("names at most 16 parents, the referenced ops first, and the next op takes the rest", () => {
    const { authority: a, signed: create } = space("approval");
    for (let i = 10; i < 30; i++) {
      const p = person(i);
      const replica = new SpaceAuthority(a.space); // each knocks having seen only the create
      replica.log.addSigned(create);
      expect(a.add(replica.write(p.did, p.seed, { type: "knock", note: "hi" }, T0 + i).wire).ok).toBe(true);
    }
    expect(a.heads.length).toBe(20);
    const knock = [...a.state.requests.keys()].sort().at(-1) as string;
    const approve = a.write(alice.did, alice.seed, { type: "approve", request: knock, ticket: false }, T0 + 40);
    expect(approve.op.parents.length).toBe(16);
    expect(approve.op.parents).toContain(knock);
    expect(approve.op.time).toBe(T0 + 40);
    const next = a.write(alice.did, alice.seed, { type: "set-description", description: "x" }, T0 + 41);
    expect(next.op.parents.length).toBe(5);
    expect(a.heads).toEqual([next.id]);
    expect(a.rejected.size).toBe(0);
  });
});

describe("Ed25519 with libsodium's rules", () => {
  const L = ed25519.Point.Fn.ORDER;
  const le = (b: Uint8Array) => b.reduceRight((n, x) => (n << 8n) | BigInt(x), 0n);
  const leBytes = (n: bigint) => Uint8Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn));
  const seed = new Uint8Array(32).fill(3);
  const { scalar } = ed25519.utils.getExtendedPublicKey(seed);
  const pub = ed25519.getPublicKey(seed);
  const msg = new TextEncoder().encode("hearth-space-op-v1\n{}");

  it("refuses an R of small order that a cofactored check (noble's own verify) takes", () => {
    // R = a point of order 8, S = h·a: [S]B - [h]A - R is that point, which a
    // cofactored check multiplies away; libsodium refuses any small-order R.
    const r = Uint8Array.from(fromHex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"));
    const h = le(sha512(new Uint8Array([...r, ...pub, ...msg]))) % L;
    const sig = new Uint8Array([...r, ...leBytes((h * scalar) % L)]);
    expect(ed25519.verify(sig, msg, pub, { zip215: false })).toBe(true);
    expect(ed25519VerifyStrict(pub, msg, sig)).toBe(false);
  });

  it("takes an honest signature and refuses S + L", () => {
    const sig = ed25519.sign(msg, seed);
    expect(ed25519VerifyStrict(pub, msg, sig)).toBe(true);
    const s = le(sig.subarray(32)) + L;
    expect(ed25519VerifyStrict(pub, msg, new Uint8Array([...sig.subarray(0, 32), ...leBytes(s)]))).toBe(false);
  });
});

function fromHex(h: string): number[] {
  return h.match(/../g)?.map((b) => parseInt(b, 16)) ?? [];
}

describe("AuthorityLog at the boundary", () => {
  // create, join, set-role, set-description: a chain, each op on the one before.
  function chain() {
    const { authority: a } = space();
    a.write(bob.did, bob.seed, { type: "join" }, T0 + 1);
    a.write(alice.did, alice.seed, { type: "set-role", target: bob.did, role: "admin" }, T0 + 2);
    a.write(bob.did, bob.seed, { type: "set-description", description: "d" }, T0 + 3);
    return { space: a.space, wires: [...a.log] };
  }
  const refusal = (log: AuthorityLog, data: Uint8Array | string) => {
    try {
      log.add(data);
    } catch (e) {
      if (e instanceof OpError) return e.reason;
      throw e;
    }
    return null;
  };

  it("keeps ops that wait for a parent and resolves them when it comes", () => {
    const s = chain();
    const log = new AuthorityLog(s.space);
    log.add(s.wires[0]);
    const last = log.add(s.wires[3]);
    expect(log.pending).toEqual(new Set([last]));
    expect(log.state.rejected.get(last)).toBe("unknown-parent");
    const third = log.add(s.wires[2]);
    expect(log.missing().size).toBe(1);
    expect(log.missing().has(third)).toBe(false);
    log.add(s.wires[1]);
    expect(log.missing().size + log.pending.size + log.state.rejected.size).toBe(0);
    expect(log.state.description).toBe("d");
    const again = log.add(s.wires[1]); // a duplicate: its id, nothing else
    expect(log.has(again)).toBe(true);
    expect(log.size).toBe(4);
  });

  it("enforces its limits with Python's reasons", () => {
    const s = chain();
    let log = new AuthorityLog(s.space, { limits: { maxOps: 2, maxRefused: 2 } });
    log.add(s.wires[0]);
    log.add(s.wires[1]);
    expect(refusal(log, s.wires[2])).toBe("log-full");
    for (const junk of ["1", "2", "3"]) expect(refusal(log, junk)).toBe("bad-shape");
    expect(log.refused.size).toBe(2);

    log = new AuthorityLog(s.space, { limits: { maxPending: 1 } });
    log.add(s.wires[2]); // waits for its parent
    log.add(s.wires[3]); // its parent is here (itself waiting): welcome
    expect(refusal(log, s.wires[1])).toBe("too-many-pending");
    log.add(s.wires[0]);
    log.add(s.wires[1]); // now its parent is here
    expect(log.pending.size).toBe(0);
    expect(log.state.description).toBe("d");

    expect(refusal(new AuthorityLog(s.space, { limits: { maxOpBytes: 100 } }), s.wires[0])).toBe("too-large");
    log = new AuthorityLog(s.space, { limits: { maxParents: 0 } });
    log.add(s.wires[0]);
    expect(refusal(log, s.wires[1])).toBe("too-many-parents");
  });

  it("verifies other DIDs with the keys the lookup names", () => {
    const { authority: a, signed: create } = space();
    const plc = "did:plc:" + "a".repeat(24);
    const key = person(40);
    const other = person(41);
    const writer = new SpaceAuthority(a.space, { lookup: (did) => (did === plc ? [ed25519.getPublicKey(key.seed)] : []) });
    writer.log.addSigned(create);
    const join = writer.write(plc, key.seed, { type: "join" }, T0 + 1);
    const lookup = (keys: Uint8Array[]) => {
      const log = new AuthorityLog(a.space, { lookup: (did) => (did === plc ? keys : []) });
      log.addSigned(create);
      return log;
    };
    expect(refusal(lookup([]), join.wire)).toBe("unknown-key");
    expect(refusal(lookup([ed25519.getPublicKey(other.seed)]), join.wire)).toBe("bad-signature");
    const log = lookup([ed25519.getPublicKey(other.seed), ed25519.getPublicKey(key.seed)]); // current and previous
    log.add(join.wire);
    expect(log.state.isMember(plc)).toBe(true);
  });
});

describe("a device's own cache of verified ops", () => {
  it("reloads without signature checks to the same state, and only skips the signature", () => {
    const { authority: a } = space();
    a.write(bob.did, bob.seed, { type: "join" }, T0 + 1);
    a.write(alice.did, alice.seed, { type: "set-description", description: "cached" }, T0 + 2);
    const cached = [...a.log].map((w) => new TextDecoder().decode(w)); // as IndexedDB would hold them
    const reloaded = new AuthorityLog(a.space);
    for (const w of cached) reloaded.addVerified(w);
    expect(canonicalText(reloaded.state.toJson())).toBe(canonicalText(a.state.toJson()));
    const forged = cached[2].replace(/"sig":"[0-9a-f]{8}/, '"sig":"00000000');
    expect(() => new AuthorityLog(a.space).add(forged)).toThrowError(/bad-signature/);
    const other = space("approval").authority;
    expect(() => reloaded.addVerified(other.log.wire(other.space) as Uint8Array)).toThrowError(/wrong-space/);
  });
});

describe("authors that are not did:key", () => {
  it("verify with the keyserver's signing keys, fetched before the ops are added", async () => {
    const world = new FakeWorld();
    const plc = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    const keys = newKeys();
    world.keys.set(plc, keys);
    const directory = new KeyDirectory(KEYSERVER, world.fetch);
    const { authority: a, signed: create } = space();
    const writer = new SpaceAuthority(a.space, { lookup: (d) => (d === plc ? [ed25519.getPublicKey(keys.signingSeed)] : []) });
    writer.log.addSigned(create);
    const join = writer.write(plc, keys.signingSeed, { type: "join" }, T0 + 1);
    const ghost = "did:web:nobody.test";
    const author = new AuthorKeys(directory);
    const b = new SpaceAuthority(a.space, { lookup: author.lookup });
    b.add(create.wire);
    expect(b.add(join.wire)).toMatchObject({ ok: false, reason: "unknown-key" }); // not fetched yet
    const ghostWire = new TextDecoder().decode(join.wire).replace(plc, ghost);
    expect(await author.prefetch([join.wire, ghostWire, "junk"])).toEqual([ghost]);
    expect(b.add(join.wire)).toMatchObject({ ok: true });
    expect(b.state.isMember(plc)).toBe(true);
    expect(b.add(ghostWire)).toMatchObject({ ok: false, reason: "unknown-key" });
  });
});

describe("canonical JSON", () => {
  it("writes what Python's json.dumps writes, and refuses what it refuses", () => {
    // The value and text of tests/spaces/test_parse.py's test_canonical_matches_json_stringify.
    const value = { b: '\u0000\u001f\b\f\n\r\t"\\\u007f\u2028é😀', a: [true, -(2 ** 53 - 1)] };
    const text = '{"a":[true,-9007199254740991],"b":"\\u0000\\u001f\\b\\f\\n\\r\\t\\"\\\\\u007f\u2028é😀"}';
    expect(canonicalText(value)).toBe(text);
    expect(parseCanonical(new TextEncoder().encode(text))).toEqual(value);
    const reason = (t: string) => {
      try {
        parseCanonical(new TextEncoder().encode(t));
      } catch (e) {
        return e instanceof OpError ? e.reason : "?";
      }
      return null;
    };
    expect(reason('{"a":"\\ud800"}')).toBe("not-canonical");
    expect(reason('{"a":"\\udc00\\ud800"}')).toBe("not-canonical");
    expect(reason('{"a":"\\ud83d\\ude00"}')).toBe("not-canonical"); // escaped, not literal
    expect(reason('{"a":NaN}')).toBe("not-json");
    expect(reason('{"a":1.5,')).toBe("not-json");
    expect(reason('{"a":1' + "0".repeat(5000) + "}")).toBe("not-canonical");
    expect(reason('{"a":9007199254740992}')).toBe("not-canonical");
    expect(reason('{"a":-0}')).toBe("not-canonical");
    expect(reason('\ufeff{"a":1}')).toBe("not-json");
    expect(reason('{"é":1}')).toBe("not-canonical");
  });
});
