import { describe, expect, it } from "vitest";
import {
  argon2,
  challenge,
  checkFirstPost,
  encodeStamp,
  GRACE_MS,
  logStampReason,
  makeStamp,
  parseStamp,
  ReplayCache,
  SKEW_MS,
  StampError,
  stampRequired,
  stampTag,
  verifyStamp,
  WINDOW_MS,
  toHex,
  type Purpose,
  type Stamp,
} from "../src/lib/spaces/stamps";

// Written by tests/spaces/make_stamp_vectors.py; the Python tests check the same file.
import vectorFile from "../../tests/spaces/stamp_vectors.json";
interface Vectors {
  tags: { value: string; tag: string }[];
  argon2: { did: string; space: string; purpose: Purpose; window: number; challenge: string; nonce: string; output: string }[];
  made: { did: string; space: string; purpose: Purpose; bits: number; now: number; seed: string; stamp: string }[];
  verify: { name: string; stamp: string | null; did: string; space: string; purpose: Purpose; bits: number; now: number; reason: string | null }[];
}
const vectors = vectorFile as Vectors;
const hex = (h: string) => Uint8Array.from(h.match(/../g) ?? [], (b) => parseInt(b, 16));

function reasonOf(stamp: Stamp | string | null, did: string, space: string, purpose: Purpose, bits: number, now: number) {
  try {
    verifyStamp(stamp, did, space, purpose, bits, now);
    return null;
  } catch (e) {
    if (!(e instanceof StampError)) throw e;
    return e.reason;
  }
}

const ALICE = vectors.made[0].did;
const SPACE = vectors.made[0].space;
const NOW = vectors.made[0].now;
const BOB = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

describe("stamps match the Python implementation byte for byte", () => {
  it("tags, challenges and Argon2id outputs", () => {
    for (const t of vectors.tags) expect(stampTag(t.value)).toBe(t.tag);
    for (const a of vectors.argon2) {
      const chal = challenge(a.did, a.space, a.purpose, a.window);
      expect(toHex(chal)).toBe(a.challenge);
      expect(toHex(argon2(chal, hex(a.nonce)))).toBe(a.output);
    }
  });

  it("makes the same stamps from the same seed", async () => {
    for (const m of vectors.made) {
      const s = await makeStamp(m.did, m.space, m.purpose, m.bits, m.now, { seed: hex(m.seed) });
      expect(encodeStamp(s)).toBe(m.stamp);
    }
  });

  it("refuses with the same reasons", () => {
    for (const v of vectors.verify) {
      expect([v.name, reasonOf(v.stamp, v.did, v.space, v.purpose, v.bits, v.now)]).toEqual([v.name, v.reason]);
    }
  });
});

describe("stamps", () => {
  it("made stamps verify, and only for their binding and window", async () => {
    const s = await makeStamp(ALICE, SPACE, "join", 2, NOW);
    expect(parseStamp(encodeStamp(s))).toEqual(s);
    expect(reasonOf(encodeStamp(s), ALICE, SPACE, "join", 2, NOW)).toBeNull();
    expect(reasonOf(s, BOB, SPACE, "join", 2, NOW)).toBe("stamp-wrong-did");
    expect(reasonOf(s, ALICE, "00".repeat(32), "join", 2, NOW)).toBe("stamp-wrong-space");
    expect(reasonOf(s, ALICE, SPACE, "first-post", 2, NOW)).toBe("stamp-wrong-purpose");
    const start = s.window * WINDOW_MS;
    expect(reasonOf(s, ALICE, SPACE, "join", 2, start - SKEW_MS - 1)).toBe("stamp-future");
    expect(reasonOf(s, ALICE, SPACE, "join", 2, start + WINDOW_MS + GRACE_MS)).toBe("stamp-expired");
  });

  it("parses only the one encoding and never throws anything but StampError", () => {
    for (const bad of ["", "hs1", "hs1.join.1.0.0.0", 42, null, "x".repeat(500), "hs1.join.9007199254740993." + "0".repeat(16) + "." + "0".repeat(16) + "." + "0".repeat(32)]) {
      expect(() => parseStamp(bad)).toThrow(StampError);
    }
  });

  it("refuses replays in the log and lets ticket holders skip first-post stamps", async () => {
    const members = new Map([[BOB, { ticket: true }], [ALICE, { ticket: false }]]);
    const state = { space: SPACE, stampJoin: 2, stampFirstPost: 3, members };
    const s = encodeStamp(await makeStamp("did:key:zdave", SPACE, "join", 2, NOW));
    const used = new Set<string>();
    expect(logStampReason(state, "did:key:zdave", "join", s, NOW, used)).toBeNull();
    expect(logStampReason(state, "did:key:zdave", "join", s, NOW + 1, used)).toBe("stamp-replayed");
    expect(logStampReason(state, "did:key:zdave", "join", undefined, NOW, used)).toBe("stamp-missing");
    expect(stampRequired(state, BOB, "first-post")).toBe(0);
    expect(stampRequired(state, ALICE, "first-post")).toBe(3);
    expect(stampRequired(state, "did:key:zdave", "join")).toBe(2);
  });

  it("yields to the event loop, reports progress and can be aborted", async () => {
    const controller = new AbortController();
    const progress: number[] = [];
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const making = makeStamp(ALICE, SPACE, "join", 40, NOW, {
      signal: controller.signal,
      sliceMs: 5,
      onProgress: (attempts, expected) => {
        progress.push(attempts);
        expect(expected).toBe(2 ** 40);
        if (progress.length === 3) controller.abort(new Error("stop"));
      },
    });
    await expect(making).rejects.toThrow("stop");
    clearInterval(timer);
    expect(progress.length).toBe(3);
    expect(progress[2]).toBeGreaterThan(progress[0]);
    expect(ticks).toBeGreaterThan(0);
  });

  it("checks first posts: tickets skip, stamps are used once", async () => {
    const members = new Map([[BOB, { ticket: true }], [ALICE, { ticket: false }]]);
    const state = { space: SPACE, stampJoin: 0, stampFirstPost: 2, members };
    const cache = new ReplayCache(2);
    checkFirstPost(state, BOB, null, NOW, cache);
    expect(() => checkFirstPost(state, ALICE, null, NOW, cache)).toThrow("stamp-missing");
    const s = encodeStamp(await makeStamp(ALICE, SPACE, "first-post", 2, NOW));
    checkFirstPost(state, ALICE, s, NOW, cache);
    expect(() => checkFirstPost(state, ALICE, s, NOW + 1, cache)).toThrow("stamp-replayed");
    expect(cache.size).toBe(1);
  });
});
