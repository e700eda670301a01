// Talking to our services as the user: each service's DID (for `aud`), fresh
// self-signed service-auth JWTs, router connect tokens and syncserver sessions.

import type { Config, ServiceName } from "./config";
import { didWebForUrl, mintServiceJwt, type Identity } from "./identity";

export const NSID = {
  routerConnect: "chat.hearth.v1.router.connect",
  syncToken: "chat.hearth.v1.sync.token",
  syncSetAccess: "chat.hearth.v1.sync.setAccess",
} as const;

export class ServiceAuth {
  private dids = new Map<string, string>();

  constructor(
    private identity: Identity,
    private config: Config,
  ) {}

  /** Base URL for HTTP calls to a service (same-origin pass-through when offered). */
  httpBase(name: ServiceName): string {
    const base = this.config.http[name] ?? this.config.services[name];
    if (!base) throw new Error(`no ${name} configured`);
    return base;
  }

  /** The service's DID from its did.json; the did:web of its URL when that is not served. */
  async serviceDid(name: ServiceName): Promise<string> {
    const known = this.dids.get(name);
    if (known) return known;
    const url = this.config.services[name];
    if (!url) throw new Error(`no ${name} configured`);
    let did = didWebForUrl(url);
    try {
      const res = await fetch(`${this.httpBase(name)}/.well-known/did.json`);
      if (res.ok) {
        const doc = (await res.json()) as { id?: unknown };
        if (typeof doc.id === "string" && doc.id.startsWith("did:")) {
          did = doc.id;
          this.dids.set(name, did);
        }
      }
    } catch {
      // unreachable now; the did:web of its URL is what it would say
    }
    return did;
  }

  async jwt(name: ServiceName, lxm: string, ttl = 60): Promise<string> {
    return mintServiceJwt(this.identity, { aud: await this.serviceDid(name), lxm, ttl });
  }

  /** A self-signed did:key token for `/connect/as/{did}` (short-lived, single use). */
  routerToken(): Promise<string> {
    return this.jwt("router", NSID.routerConnect, 30);
  }

  /** A DID-bound syncserver session token for `ws://…/?token=`. */
  async syncToken(): Promise<string> {
    const res = await fetch(`${this.httpBase("syncserver")}/xrpc/${NSID.syncToken}`, {
      headers: { Authorization: `Bearer ${await this.jwt("syncserver", NSID.syncToken)}` },
    });
    if (!res.ok) throw new Error(`sync token: HTTP ${res.status}`);
    const body = (await res.json()) as { token?: unknown };
    if (typeof body.token !== "string") throw new Error("sync token: no token in answer");
    return body.token;
  }

  /** Owner only: who may read and write a document on the syncserver. Returns the HTTP status (0: unreachable). */
  async setAccess(
    documentId: string,
    access: { public: boolean; readers: string[]; writers: string[] },
  ): Promise<number> {
    try {
      const res = await fetch(`${this.httpBase("syncserver")}/xrpc/${NSID.syncSetAccess}`, {
        method: "POST",
        headers: {
          Authorization: `Bearer ${await this.jwt("syncserver", NSID.syncSetAccess)}`,
          "Content-Type": "application/json",
        },
        body: JSON.stringify({ documentId, ...access }),
      });
      return res.status;
    } catch {
      return 0;
    }
  }
}
