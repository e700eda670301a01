// Signing keys of authors that are not did:key (did:plc, did:web), for the log's
// synchronous KeyLookup: fetch them first (keys.ts KeyDirectory: the keyserver's
// current and previous signing keys, cached a few minutes), then add the ops.
//
//     const keys = new AuthorKeys(keyDirectory());
//     const authority = new SpaceAuthority(space, { lookup: keys.lookup });
//     await keys.prefetch(batch);
//     for (const wire of batch) authority.add(wire);

import { parseOp } from "./ops";
import type { Did } from "./ops";
import type { KeyLookup } from "./signing";

/** What AuthorKeys needs of keys.ts's KeyDirectory. */
export interface SigningKeySource {
  signingKeysOf(did: string): Promise<Uint8Array[]>;
}

export class AuthorKeys {
  private readonly keys = new Map<Did, readonly Uint8Array[]>();

  constructor(private readonly source: SigningKeySource) {}

  /** The lookup to give the log: the keys fetched so far (none: `unknown-key`). */
  readonly lookup: KeyLookup = (did) => this.keys.get(did) ?? [];

  /**
   * Fetch the keys of every author of `wires` that is not a did:key and not known
   * yet. A DID whose keys cannot be had (no keys, keyserver down) stays unknown: its
   * ops are refused `unknown-key` and may be offered again after another prefetch.
   * Returns the DIDs still without keys.
   */
  async prefetch(wires: Iterable<Uint8Array | string>): Promise<Did[]> {
    const wanted = new Set<Did>();
    for (const w of wires) {
      let author: Did;
      try {
        author = parseOp(typeof w === "string" ? new TextEncoder().encode(w) : w).op.author;
      } catch {
        continue; // the log will refuse it with the reason
      }
      if (!author.startsWith("did:key:") && !this.keys.has(author)) wanted.add(author);
    }
    const missing: Did[] = [];
    await Promise.all(
      [...wanted].map(async (did) => {
        try {
          this.keys.set(did, await this.source.signingKeysOf(did));
        } catch {
          missing.push(did);
        }
      }),
    );
    return missing.sort();
  }

  /** Forget a DID's keys (e.g. after its keyserver rotated them), so the next prefetch asks again. */
  forget(did: Did): void {
    this.keys.delete(did);
  }
}
