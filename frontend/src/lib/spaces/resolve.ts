// Resolution: a set of ops -> one SpaceState, the same whatever order they came in
// (docs/spaces.md, "Resolution"; mirrors hearth/spaces/resolve.py step for step).
//
// Walk the op graph from `create` in topological order; whenever several ops
// are ready (all their parents walked), take the one with the smallest key
//
//     (-(author's rank at the op's causal position), causal depth, op id)
//
// and apply it with rules.apply. The causal-position rank is the rank given
// to the author by the last accepted rank change (in walk order) among the
// op's ancestors; it is known when the op becomes ready. Ops whose parents
// never arrive are rejected `unknown-parent`; an op whose time is before a
// parent's, `clock`. When an accepted op lowers someone's rank, their accepted
// ops that relied on more and that the op's author had not seen are revoked: once
// the walk is done, it starts over with every op so found excluded, until a
// walk finds none (`settle`).
//
// Costs: O(n log n) heap work for n ops, plus one bitset OR per parent edge
// over the accepted ops (one bit each; a bitset is dropped once every child of
// its op is ready and it is no head), plus one walk per round of revocation
// (usually none). Adding an op whose parents
// are exactly the current heads continues the walk where it stopped (the usual
// case: one writer extending the log); anything else re-runs the walk once,
// lazily, on the next `state` read.

import { Rank } from "./ops";
import type { Did, Op, OpId } from "./ops";
import { apply, reliedRank } from "./rules";
import { SpaceState } from "./state";

type Bits = Uint32Array;
const NO_BITS: Bits = new Uint32Array(0);

function hasBit(bits: Bits, b: number): boolean {
  const w = b >>> 5;
  return w < bits.length && (bits[w] & (1 << (b & 31))) !== 0;
}

/** The union of `sets`, plus the bits `extra`. */
function union(sets: Bits[], extra: number[]): Bits {
  let len = 0;
  for (const s of sets) len = Math.max(len, s.length);
  for (const b of extra) len = Math.max(len, (b >>> 5) + 1);
  if (len === 0) return NO_BITS;
  if (sets.length === 1 && extra.length === 0) return sets[0]; // bitsets are never changed once made
  const out = new Uint32Array(len);
  for (const s of sets) for (let i = 0; i < s.length; i++) out[i] |= s[i];
  for (const b of extra) out[b >>> 5] |= 1 << (b & 31);
  return out;
}

interface Entry {
  negPast: number;
  depth: number;
  id: OpId;
}

const before = (a: Entry, b: Entry): boolean =>
  a.negPast !== b.negPast ? a.negPast < b.negPast : a.depth !== b.depth ? a.depth < b.depth : a.id < b.id;

/** A binary min-heap of ready ops, by (-past rank, depth, op id). */
class Heap {
  private items: Entry[] = [];

  get size(): number {
    return this.items.length;
  }

  push(e: Entry): void {
    const a = this.items;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (!before(a[i], a[up])) break;
      [a[i], a[up]] = [a[up], a[i]];
      i = up;
    }
  }

  pop(): Entry {
    const a = this.items;
    const top = a[0];
    const last = a.pop() as Entry;
    if (a.length) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && before(a[l], a[m])) m = l;
        if (r < a.length && before(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

/** One run of the walk: everything derived from the ops, rebuilt on a re-run. */
class Walk {
  readonly heap = new Heap();
  readonly walked = new Set<OpId>();
  /** op -> parents not walked yet */
  readonly missing = new Map<OpId, number>();
  readonly depth = new Map<OpId, number>();
  /** author's causal-past rank, until the op is walked */
  readonly past = new Map<OpId, Rank>();
  /** bitset of the rank changes in the op's past */
  readonly anc = new Map<OpId, Bits>();
  readonly unreadyChildren = new Map<OpId, number>();
  /** accepted ops -> their bit */
  readonly bit = new Map<OpId, number>();
  /** did -> (bit, rank) for every rank change of theirs, in walk order */
  readonly history = new Map<Did, [number, Rank][]>();
  /** accepted ops that relied on a rank, by author: (bit, rank relied on, op id) */
  readonly acts = new Map<Did, [number, Rank, OpId][]>();
  readonly heads = new Set<OpId>();
  nextBit = 0;
  /** revoked ops found by this walk: for the next round */
  readonly revoked = new Set<OpId>();

  constructor(
    readonly state: SpaceState,
    /** revoked in an earlier round: rejected without a look */
    readonly excluded: ReadonlySet<OpId>,
  ) {}

  /** Nobody needs `id`'s bitset again: all its children are ready, and it is no head. */
  drop(id: OpId): void {
    this.anc.delete(id);
    this.unreadyChildren.delete(id);
  }
}

/**
 * Holds a space's verified ops and resolves them. The caller must only `add` ops
 * whose signature it has verified and whose `space` is this space; AuthorityLog
 * does both.
 */
export class Resolver {
  readonly ops = new Map<OpId, Op>();
  private readonly childrenOf = new Map<OpId, OpId[]>();
  private walk: Walk | null = null;

  constructor(readonly space: OpId) {}

  get size(): number {
    return this.ops.size;
  }

  has(id: OpId): boolean {
    return this.ops.has(id);
  }

  /** Add one op (a no-op if known). The state follows on the next `state` read. */
  add(id: OpId, op: Op): void {
    if (this.ops.has(id)) return;
    this.ops.set(id, op);
    for (const p of op.parents) {
      const list = this.childrenOf.get(p);
      if (list) list.push(id);
      else this.childrenOf.set(p, [id]);
    }
    const walk = this.walk;
    if (walk === null || walk.heap.size) {
      this.walk = null;
      return;
    }
    const walked = op.parents.filter((p) => walk.walked.has(p));
    if (walked.length < op.parents.length && walked.every((p) => walk.anc.has(p))) {
      // It waits for a parent; the walk reaches it when that parent comes.
      for (const p of walked) walk.unreadyChildren.set(p, (walk.unreadyChildren.get(p) as number) + 1);
      walk.state.rejected.set(id, "unknown-parent");
    } else if (walk.heads.size && sameSet(walk.heads, op.parents)) {
      // It follows everything walked so far: the walk just goes on.
      for (const p of walked) walk.unreadyChildren.set(p, (walk.unreadyChildren.get(p) as number) + 1);
      this.enter(walk, id);
      this.run(walk);
      if (walk.revoked.size) this.walk = null;
    } else {
      this.walk = null;
    }
  }

  addAll(ops: Iterable<readonly [OpId, Op]>): void {
    for (const [id, op] of ops) this.add(id, op);
  }

  /** The resolved state; read-only, and valid only until the next `add`. */
  get state(): SpaceState {
    let walk = this.walk;
    if (walk === null) walk = this.walk = this.settle();
    return walk.state;
  }

  /** The walked ops nothing walked follows (sorted): the parents for a new op. */
  get heads(): OpId[] {
    void this.state; // brings the walk up to date
    return [...(this.walk as Walk).heads].sort();
  }

  /** The ops here that name `id` as a parent. */
  children(id: OpId): OpId[] {
    return [...(this.childrenOf.get(id) ?? [])];
  }

  /** Op ids that ops name as parents but that are not here. */
  unknownParents(): Set<OpId> {
    const out = new Set<OpId>();
    for (const p of this.childrenOf.keys()) if (!this.ops.has(p)) out.add(p);
    return out;
  }

  // --- the walk --------------------------------------------------------------

  /** Walk until no accepted op is revoked by a concurrent demotion (see `revokeFor`). */
  private settle(): Walk {
    const excluded = new Set<OpId>();
    for (;;) {
      const walk = this.freshWalk(excluded);
      this.run(walk);
      if (!walk.revoked.size) {
        // Everything not walked waits for a parent that is not here (or for create).
        for (const id of this.ops.keys()) if (!walk.walked.has(id)) walk.state.rejected.set(id, "unknown-parent");
        return walk;
      }
      // Each round excludes at least one more op (those found were accepted in it):
      // at most n rounds; usually none, and one per link of a chain of revocations.
      for (const id of walk.revoked) excluded.add(id);
    }
  }

  private freshWalk(excluded: ReadonlySet<OpId>): Walk {
    const walk = new Walk(new SpaceState(this.space), new Set(excluded));
    const root = this.ops.get(this.space);
    if (root !== undefined && root.body.type === "create") this.enter(walk, this.space);
    return walk;
  }

  /** `id` became ready: compute its causal-past facts and queue it. */
  private enter(walk: Walk, id: OpId): void {
    const op = this.ops.get(id) as Op;
    const sets: Bits[] = [];
    const extra: number[] = [];
    let depth = 0;
    for (const p of op.parents) {
      sets.push(walk.anc.get(p) as Bits);
      const b = walk.bit.get(p);
      if (b !== undefined) extra.push(b);
      depth = Math.max(depth, (walk.depth.get(p) as number) + 1);
      const left = (walk.unreadyChildren.get(p) as number) - 1;
      walk.unreadyChildren.set(p, left);
      if (left === 0 && !walk.heads.has(p)) walk.drop(p);
    }
    const anc = union(sets, extra);
    let past: Rank = Rank.NONE;
    const history = walk.history.get(op.author) ?? [];
    for (let i = history.length - 1; i >= 0; i--) {
      if (hasBit(anc, history[i][0])) {
        past = history[i][1];
        break;
      }
    }
    walk.anc.set(id, anc);
    walk.unreadyChildren.set(id, this.childrenOf.get(id)?.length ?? 0);
    walk.depth.set(id, depth);
    walk.past.set(id, past);
    walk.heap.push({ negPast: -past, depth, id });
  }

  private run(walk: Walk): void {
    const state = walk.state;
    const rejected = state.rejected;
    const changes: [Did, Rank][] = [];
    const onRank = (did: Did, rank: Rank) => void changes.push([did, rank]);
    while (walk.heap.size) {
      const id = walk.heap.pop().id;
      const op = this.ops.get(id) as Op;
      const past = walk.past.get(id) as Rank;
      walk.past.delete(id);
      walk.walked.add(id);
      for (const p of op.parents) {
        walk.heads.delete(p);
        if (walk.unreadyChildren.get(p) === 0) walk.drop(p);
      }
      walk.heads.add(id);
      rejected.delete(id); // it may have waited for a parent until now
      changes.length = 0;
      let why: string | null;
      let relied: Rank = Rank.NONE;
      if (walk.excluded.has(id)) why = "revoked";
      else if (op.space !== this.space && id !== this.space) why = "wrong-space";
      else if (op.parents.some((p) => op.time < (this.ops.get(p) as Op).time)) why = "clock";
      else {
        relied = reliedRank(state, op);
        why = apply(state, id, op, past, onRank);
      }
      if (why !== null) {
        rejected.set(id, why);
      } else {
        state.accepted += 1;
        const b = walk.nextBit++;
        walk.bit.set(id, b);
        for (const [did, rank] of changes) {
          const h = walk.history.get(did);
          if (h) h.push([b, rank]);
          else walk.history.set(did, [[b, rank]]);
          if (did !== op.author) revokeFor(walk, id, did, rank);
        }
        if (relied > Rank.NONE) {
          const acts = walk.acts.get(op.author);
          if (acts) acts.push([b, relied, id]);
          else walk.acts.set(op.author, [[b, relied, id]]);
        }
      }
      for (const child of this.childrenOf.get(id) ?? []) {
        const childOp = this.ops.get(child);
        if (childOp === undefined) continue;
        let left = walk.missing.get(child);
        if (left === undefined) {
          // first parent walked: count those still to come
          left = childOp.parents.filter((p) => !walk.walked.has(p)).length;
        } else {
          left -= 1;
        }
        if (left) {
          walk.missing.set(child, left);
        } else {
          walk.missing.delete(child);
          this.enter(walk, child);
        }
      }
    }
  }
}

/** `by` brought `did` down to `rank`: `did`'s accepted ops that relied on more and that
 * `by`'s author had not seen (concurrent with `by`) are revoked. */
function revokeFor(walk: Walk, by: OpId, did: Did, rank: Rank): void {
  const seen = walk.anc.get(by) as Bits;
  for (const [b, need, id] of walk.acts.get(did) ?? []) {
    if (need > rank && !hasBit(seen, b)) walk.revoked.add(id);
  }
}

function sameSet(a: Set<OpId>, b: readonly OpId[]): boolean {
  if (a.size !== b.length) return false; // parents are unique
  return b.every((p) => a.has(p));
}
