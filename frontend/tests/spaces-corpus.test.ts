// The shared corpus (../tests/spaces/corpus/*.json, written by the Python side's
// tests/spaces/make_corpus.py): every file's ops, delivered to a fresh log in the
// listed order, reversed and shuffled, are refused exactly as listed and resolve to
// exactly the expected state (compared as canonical JSON bytes, like the Python suite).

import { describe, expect, it } from "vitest";
import { AuthorityLog, canonicalText, OpError } from "../src/lib/spaces";
import type { Json } from "../src/lib/spaces";

interface CorpusFile {
  name: string;
  description: string;
  space: string;
  ops: string[];
  expect: { refused: { index: number; reason: string }[]; state: Json };
}

const files = import.meta.glob<CorpusFile>("../../tests/spaces/corpus/*.json", { eager: true, import: "default" });
const corpus = Object.values(files).sort((a, b) => (a.name < b.name ? -1 : 1));

/** A small seeded PRNG (mulberry32), so a failing order can be replayed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  const random = rng(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function deliver(doc: CorpusFile, order: number[], readEach = false) {
  const log = new AuthorityLog(doc.space);
  const refused: { index: number; reason: string }[] = [];
  for (const i of order) {
    try {
      log.add(doc.ops[i]);
    } catch (e) {
      if (!(e instanceof OpError)) throw e;
      refused.push({ index: i, reason: e.reason });
    }
    if (readEach) void log.state;
  }
  refused.sort((a, b) => a.index - b.index);
  return { refused, state: canonicalText(log.state.toJson()) };
}

describe("the shared spaces corpus", () => {
  it("is there", () => {
    expect(corpus.length).toBeGreaterThanOrEqual(20);
  });

  for (const doc of corpus) {
    it(`${doc.name}: the listed order gives the expected refusals and state`, () => {
      const got = deliver(doc, doc.ops.map((_, i) => i));
      expect(got.refused).toEqual(doc.expect.refused);
      // Compare parsed first for a readable diff, then the exact bytes.
      expect(JSON.parse(got.state)).toEqual(doc.expect.state);
      expect(got.state).toBe(canonicalText(doc.expect.state));
    });

    it(`${doc.name}: reversed and shuffled deliveries give the same`, () => {
      const want = canonicalText(doc.expect.state);
      const order = doc.ops.map((_, i) => i);
      const orders = [[...order].reverse(), ...[1, 2, 3, 4, 5, 6, 7, 8].map((s) => shuffled(order, s))];
      orders.forEach((o, k) => {
        const got = deliver(doc, o, k % 2 === 1); // half of them read the state after every op
        expect(got.refused, `order ${o.join(",")}`).toEqual(doc.expect.refused);
        expect(got.state, `order ${o.join(",")}`).toBe(want);
      });
    });
  }
});
