// The authority state of a space: what the resolved log says, and the questions
// the PWA asks of it (mirrors hearth/spaces/state.py). `toJson` is the state's
// canonical form, the one the shared corpus (tests/spaces/corpus/) compares with
// the Python implementation; docs/spaces.md specifies it field by field.

import type { Json, JsonObject } from "./encoding";
import { ROLE_OF_RANK } from "./ops";
import type { Did, JoinPolicy, OpId, Rank } from "./ops";

export interface Member {
  readonly rank: Exclude<Rank, 0>;
  /** Skips the first-post stamp (approved with a ticket, or joined by invite). */
  readonly ticket: boolean;
}

export interface BanRecord {
  readonly reason: string;
  readonly by: Did;
  readonly op: OpId;
}

export interface InviteRecord {
  readonly by: Did;
  readonly key: string;
  readonly expires: number | null;
  readonly maxUses: number | null;
  uses: number;
  revoked: boolean;
}

export interface JoinRequest {
  readonly did: Did;
  readonly note: string;
  readonly time: number;
  /** Whether the knock carried a stamp. */
  readonly stamp: boolean;
}

/**
 * Who may read and write a space at one moment (`SpaceState.access()`), kept to
 * compare with a later moment: `lostRead(later)` names the DIDs whose sessions on
 * the space's documents must end (the PWA: stop syncing with them, show a kicked or
 * banned person why). Cost: O(members + bans) to take and compare.
 */
export class Access {
  constructor(
    readonly members: ReadonlySet<Did>,
    readonly banned: ReadonlySet<Did>,
    readonly policy: JoinPolicy,
  ) {}

  mayRead(did: Did | null): boolean {
    if (did !== null && this.members.has(did)) return true;
    return this.policy === "open" && !(did !== null && this.banned.has(did));
  }

  /** Members now who may not read `later` (a kick, ban, leave, or a policy change). */
  lostRead(later: Access): Set<Did> {
    return new Set([...this.members].filter((d) => !later.mayRead(d)));
  }

  /** Members now who are no members `later`. */
  lostWrite(later: Access): Set<Did> {
    return new Set([...this.members].filter((d) => !later.members.has(d)));
  }
}

/** The state of one space. Read-only for callers (only the resolver changes it); valid until the log changes. */
export class SpaceState {
  owner: Did | null = null;
  publicName = "";
  privateName = "";
  description = "";
  policy: JoinPolicy = "invite-only";
  stampJoin = 0;
  stampFirstPost = 0;
  readonly members = new Map<Did, Member>();
  readonly bans = new Map<Did, BanRecord>();
  readonly invites = new Map<OpId, InviteRecord>();
  readonly requests = new Map<OpId, JoinRequest>();
  /** channel -> message id -> the redact op. */
  readonly redactions = new Map<string, Map<string, OpId>>();
  /** channel -> replacement document. */
  readonly purges = new Map<string, string>();
  /** Automerge actor id -> DID. */
  readonly actors = new Map<string, Did>();
  /** op id -> reason code, for every op in the set that did not take effect. */
  readonly rejected = new Map<OpId, string>();
  /** Ops that took effect. */
  accepted = 0;
  /** Stamps used by ops that took effect (stamps.ts logStampReason's replay set; not in toJson). */
  readonly usedStamps = new Set<string>();

  constructor(readonly space: OpId) {}

  // --- plug-in points (docs/spaces.md) -------------------------------------

  rankOf(did: Did | null): Rank {
    return (did !== null && this.members.get(did)?.rank) || 0;
  }

  isMember(did: Did | null): boolean {
    return did !== null && this.members.has(did);
  }

  isBanned(did: Did | null): boolean {
    return did !== null && this.bans.has(did);
  }

  /** Members read; in an `open` space anyone not banned (also anonymous: null) reads too. */
  mayRead(did: Did | null): boolean {
    if (this.isMember(did)) return true;
    return this.policy === "open" && !this.isBanned(did);
  }

  /** A snapshot of who may read and write, to compare before and after `add`s. */
  access(): Access {
    return new Access(new Set(this.members.keys()), new Set(this.bans.keys()), this.policy);
  }

  /** Only members write to the space's documents. */
  mayWrite(did: Did | null): boolean {
    return this.isMember(did);
  }

  /** The DID that bound the Automerge actor id `actor` (hex), or null. See docs/spaces.md
   * "Actor binding: what it proves" before trusting it. */
  actorDid(actor: string): Did | null {
    return this.actors.get(actor) ?? null;
  }

  /** A change by `actor` arriving from `did`: the actor is `did`'s and `did` writes. */
  mayWriteAs(did: Did | null, actor: string): boolean {
    return did !== null && this.actors.get(actor) === did && this.mayWrite(did);
  }

  isRedacted(channel: string, message: string): boolean {
    return this.redactions.get(channel)?.has(message) ?? false;
  }

  /** The document a channel lives in now, following purges (bounded by their count). */
  currentChannel(channel: string): string {
    for (let i = 0; i <= this.purges.size; i++) {
      const next = this.purges.get(channel);
      if (next === undefined) return channel;
      channel = next;
    }
    return channel;
  }

  needsFirstPostStamp(did: Did): boolean {
    const m = this.members.get(did);
    return this.stampFirstPost > 0 && (m === undefined || !m.ticket);
  }

  // --- canonical form ------------------------------------------------------

  /** The state as JSON values (encoding.canonical makes it the bytes the corpus compares). */
  toJson(): JsonObject {
    // fromEntries defines properties, so a key such as "__proto__" (a valid channel id) stays a key.
    const obj = <V>(m: Map<string, V>, f: (v: V) => Json): JsonObject =>
      Object.fromEntries([...m].map(([k, v]) => [k, f(v)]));
    return {
      space: this.space,
      owner: this.owner ?? "",
      publicName: this.publicName,
      privateName: this.privateName,
      description: this.description,
      joinPolicy: this.policy,
      stampCost: { join: this.stampJoin, firstPost: this.stampFirstPost },
      members: obj(this.members, (m) => ({ rank: ROLE_OF_RANK[m.rank], ticket: m.ticket })),
      bans: obj(this.bans, (b) => ({ reason: b.reason, by: b.by, op: b.op })),
      invites: obj(this.invites, (inv) => {
        const rec: JsonObject = { by: inv.by, key: inv.key, uses: inv.uses, revoked: inv.revoked };
        if (inv.expires !== null) rec.expires = inv.expires;
        if (inv.maxUses !== null) rec.maxUses = inv.maxUses;
        return rec;
      }),
      requests: obj(this.requests, (q) => ({ did: q.did, note: q.note, time: q.time, stamp: q.stamp })),
      redactions: obj(this.redactions, (msgs) => [...msgs.keys()].sort()),
      purges: obj(this.purges, (r) => r),
      actors: obj(this.actors, (d) => d),
      rejected: obj(this.rejected, (why) => why),
    };
  }
}
