// A space's authority log at the wire boundary: bytes in, verified ops kept,
// refusals explained, sizes bounded (docs/spaces.md, "The log"; mirrors
// hearth/spaces/log.py, with the same checks in the same order and the same limits).
//
// `add(data)` parses, checks the space and the signature, enforces the limits
// and hands the op to the Resolver; it throws OpError for every refusal and
// also remembers the last `maxRefused` of them (`refused`), so the UI can say
// why. Ops whose parents have not arrived are kept (up to `maxPending`) and
// resolved when they do; until then the state lists them `unknown-parent`.
//
// Memory: the wire bytes of each op (at most maxOpBytes, typically 300-600)
// plus its parsed form and its share of the resolved state: about 1.5 KB per op
// all told (measured under Node: 10,000 ops of ~490 bytes, ~1 KB each beyond
// their bytes), so a log at the default maxOps of 50,000 holds ~75 MB.

import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { utf8Bytes } from "./encoding";
import { OpError } from "./errors";
import { MAX_OP_BYTES, MAX_PARENTS, parseOp } from "./ops";
import type { Op, OpId, SignedOp } from "./ops";
import { Resolver } from "./resolve";
import { noOtherKeys, verifyOp } from "./signing";
import type { KeyLookup } from "./signing";
import type { SpaceState } from "./state";

/** Bounds on one space's log (docs/spaces.md, "Limits"). */
export interface LogLimits {
  readonly maxOps: number;
  readonly maxOpBytes: number;
  readonly maxParents: number;
  /** ops kept while a parent is missing */
  readonly maxPending: number;
  /** refusals remembered for `refused` */
  readonly maxRefused: number;
}

export const DEFAULT_LIMITS: LogLimits = {
  maxOps: 50_000,
  maxOpBytes: MAX_OP_BYTES,
  maxParents: MAX_PARENTS,
  maxPending: 1_000,
  maxRefused: 1_000,
};

export interface LogOptions {
  lookup?: KeyLookup;
  limits?: Partial<LogLimits>;
}

/** The verified ops of one space and their resolved state. */
export class AuthorityLog {
  readonly limits: LogLimits;
  /** The last refusals, oldest first: op id (or `sha256:<hex>` of bytes that did not parse) -> error. */
  readonly refused = new Map<string, OpError>();
  private readonly lookup: KeyLookup;
  private readonly resolver: Resolver;
  private readonly wires = new Map<OpId, Uint8Array>();
  /** ops with a parent not (yet) here */
  private readonly waiting = new Set<OpId>();

  constructor(
    readonly space: OpId,
    options: LogOptions = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.lookup = options.lookup ?? noOtherKeys;
    this.resolver = new Resolver(space);
  }

  get size(): number {
    return this.wires.size;
  }

  has(id: OpId): boolean {
    return this.wires.has(id);
  }

  /** The resolved state (read-only; valid until the next `add`). */
  get state(): SpaceState {
    return this.resolver.state;
  }

  /** Parents for the next op written here. */
  get heads(): OpId[] {
    return this.resolver.heads;
  }

  /** Ops kept while one of their parents is missing. */
  get pending(): ReadonlySet<OpId> {
    return new Set(this.waiting);
  }

  /** Op ids named as parents that are not here: ask peers for these. */
  missing(): Set<OpId> {
    return this.resolver.unknownParents();
  }

  /** The parsed op `id`, if held. */
  op(id: OpId): Op | undefined {
    return this.resolver.ops.get(id);
  }

  wire(id: OpId): Uint8Array | undefined {
    return this.wires.get(id);
  }

  /** Every op's wire bytes, in arrival order. */
  [Symbol.iterator](): IterableIterator<Uint8Array> {
    return this.wires.values();
  }

  /**
   * The wire bytes of every op here that is neither one of `heads` nor an ancestor of
   * one, parents before children: what a peer whose log has these heads lacks. Heads
   * unknown here are ignored (the peer has ops we lack). Cost: O(n) for n ops.
   */
  since(heads: Iterable<string>): Uint8Array[] {
    const ops = this.resolver.ops;
    const seen = new Set<string>();
    const stack = [...heads].filter((h) => ops.has(h));
    while (stack.length) {
      const id = stack.pop() as string;
      if (seen.has(id)) continue;
      seen.add(id);
      for (const p of (ops.get(id) as Op).parents) if (ops.has(p)) stack.push(p);
    }
    const wanted = [...this.wires.keys()].filter((id) => !seen.has(id));
    // Parents before children: order by depth (among the ops held here) within what is wanted.
    const depth = new Map<OpId, number>();
    const depthOf = (start: OpId): number => {
      const todo = [start];
      while (todo.length) {
        const top = todo[todo.length - 1];
        if (depth.has(top)) {
          todo.pop();
          continue;
        }
        const parents = (ops.get(top) as Op).parents.filter((p) => ops.has(p));
        const missing = parents.filter((p) => !depth.has(p));
        if (missing.length) {
          todo.push(...missing);
          continue;
        }
        depth.set(top, 1 + Math.max(-1, ...parents.map((p) => depth.get(p) as number)));
        todo.pop();
      }
      return depth.get(start) as number;
    };
    const keyed = wanted.map((id) => ({ id, d: depthOf(id) }));
    keyed.sort((a, b) => a.d - b.d || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return keyed.map(({ id }) => this.wires.get(id) as Uint8Array);
  }

  /** Verify and keep one op (bytes, or the wire text); returns its id, also for a duplicate. Throws OpError. */
  add(data: Uint8Array | string): OpId {
    const bytes = typeof data === "string" ? utf8Bytes(data) : data;
    let signed: SignedOp;
    try {
      signed = parseOp(bytes, { maxBytes: this.limits.maxOpBytes, maxParents: this.limits.maxParents });
    } catch (e) {
      if (e instanceof OpError) this.remember("sha256:" + bytesToHex(sha256(bytes)), e);
      throw e;
    }
    return this.addSigned(signed);
  }

  /**
   * As `add`, without the signature check: only for bytes that an `add` of this
   * device accepted before (the PWA's own cache of verified ops, reloaded at start),
   * since a signature check costs ~1 ms in JavaScript. Never for bytes from elsewhere.
   */
  addVerified(data: Uint8Array | string): OpId {
    const bytes = typeof data === "string" ? utf8Bytes(data) : data;
    const signed = parseOp(bytes, { maxBytes: this.limits.maxOpBytes, maxParents: this.limits.maxParents });
    return this.addSigned(signed, true);
  }

  /** As `add`, for an op already parsed (`verified`: see addVerified). */
  addSigned(signed: SignedOp, verified = false): OpId {
    if (this.wires.has(signed.id)) return signed.id;
    try {
      this.check(signed, verified);
    } catch (e) {
      if (e instanceof OpError) this.remember(signed.id, e);
      throw e;
    }
    const op = signed.op;
    this.wires.set(signed.id, signed.wire);
    if (op.parents.some((p) => !this.wires.has(p))) this.waiting.add(signed.id);
    this.resolver.add(signed.id, op);
    for (const child of this.resolver.children(signed.id)) {
      if (!this.waiting.has(child)) continue;
      const parents = this.resolver.ops.get(child)?.parents ?? [];
      if (parents.every((p) => this.wires.has(p))) this.waiting.delete(child);
    }
    return signed.id;
  }

  private check(signed: SignedOp, verified: boolean): void {
    const { op } = signed;
    const limits = this.limits;
    if (op.body.type === "create") {
      if (signed.id !== this.space) throw new OpError("wrong-space", "a create op of another space");
    } else if (op.space !== this.space) {
      throw new OpError("wrong-space", "op belongs to another space");
    }
    if (this.wires.size >= limits.maxOps) throw new OpError("log-full", `the log holds its limit of ${limits.maxOps} ops`);
    if (signed.wire.length > limits.maxOpBytes) throw new OpError("too-large", `op is over ${limits.maxOpBytes} bytes`);
    if (op.parents.length > limits.maxParents) {
      throw new OpError("too-many-parents", `an op names at most ${limits.maxParents} parents`);
    }
    if (this.waiting.size >= limits.maxPending && op.parents.some((p) => !this.wires.has(p))) {
      throw new OpError("too-many-pending", `${limits.maxPending} ops already wait for their parents`);
    }
    if (!verified) verifyOp(signed, this.lookup);
  }

  private remember(key: string, error: OpError): void {
    this.refused.delete(key);
    this.refused.set(key, error);
    while (this.refused.size > this.limits.maxRefused) {
      this.refused.delete(this.refused.keys().next().value as string);
    }
  }
}
