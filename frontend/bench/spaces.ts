// The TypeScript half of bench/spaces.py: the same ops, timed under Node.
//
//     node tests/run-ts.mjs bench/spaces.ts bench <input.json>
//
// bench/spaces.py builds the ops (signed, in Python), writes their wire text
// and what Python resolved them to, and prints these figures beside its own.
// Times are wall-clock milliseconds on a quiet machine (best of `repeat`).

import { AuthorityLog, canonicalText, parseOp, Resolver } from "../src/lib/spaces";
import type { SignedOp } from "../src/lib/spaces";
import { utf8Bytes } from "../src/lib/spaces/encoding";
import { verifyOp } from "../src/lib/spaces/signing";

export interface BenchSet {
  name: string;
  space: string;
  wires: string[];
  /** Python's state, canonical JSON text */
  state: string;
}

export interface BenchInput {
  sets: BenchSet[];
  /** how many ops to verify for the per-op figure, spread evenly over the first set
   * (verification is the slow part; busy keys get faster after a few checks) */
  verify: number;
  /** AuthorityLog.add (parse + verify + resolve) over the first set: all of it, or this many */
  logOps: number;
  repeat: number;
}

export interface BenchOutput {
  node: string;
  parseUs: number;
  verifyUs: number;
  resolve: { name: string; ops: number; ms: number; sameState: boolean; rejected: number }[];
  oneByOneMs: number;
  log: { ops: number; ms: number };
}

const now = () => performance.now();

function best(repeat: number, fn: () => void): number {
  let t = Infinity;
  for (let i = 0; i < repeat; i++) {
    const t0 = now();
    fn();
    t = Math.min(t, now() - t0);
  }
  return t;
}

function resolveAll(space: string, ops: readonly SignedOp[]) {
  const r = new Resolver(space);
  for (const s of ops) r.add(s.id, s.op);
  return r.state;
}

export function bench(input: BenchInput): BenchOutput {
  const bytes = input.sets.map((s) => s.wires.map(utf8Bytes));
  const first = bytes[0];
  let parsed: SignedOp[] = [];
  const parseMs = best(input.repeat, () => {
    parsed = first.map((w) => parseOp(w));
  });
  const step = Math.max(1, Math.floor(parsed.length / input.verify));
  const sample = parsed.filter((_, i) => i % step === 0).slice(0, input.verify);
  const verifyMs = best(1, () => sample.forEach((s) => verifyOp(s)));

  const resolve = input.sets.map((set, i) => {
    const ops = bytes[i].map((w) => parseOp(w));
    const ms = best(input.repeat, () => void resolveAll(set.space, ops));
    const state = resolveAll(set.space, ops);
    return {
      name: set.name,
      ops: ops.length,
      ms,
      sameState: canonicalText(state.toJson()) === set.state,
      rejected: state.rejected.size,
    };
  });

  const oneByOneMs = best(input.repeat, () => {
    const r = new Resolver(input.sets[0].space);
    for (const s of parsed) {
      r.add(s.id, s.op);
      void r.state;
    }
  });

  const logWires = first.slice(0, input.logOps);
  const logMs = best(1, () => {
    const log = new AuthorityLog(input.sets[0].space);
    for (const w of logWires) log.add(w);
    void log.state;
  });

  return {
    node: typeof navigator !== "undefined" ? navigator.userAgent : "node",
    parseUs: (parseMs / first.length) * 1000,
    verifyUs: (verifyMs / sample.length) * 1000,
    resolve,
    oneByOneMs,
    log: { ops: logWires.length, ms: logMs },
  };
}
