// Talking to our services as the user: each service's DID (for `aud`), fresh
// service-auth JWTs (self-signed for a did:key, minted by the PDS for an
// atproto account), router connect tokens, syncserver sessions, and our keys
// on the keyserver.

import type { Config, ServiceName } from "./config";
import { didWebForUrl, mintServiceJwt, type Identity } from "./identity";
import { ed25519DidKey, parsePrivate, x25519DidKey, x25519OfDidKey, type PrivateKeys } from "./keys";

export const NSID = {
  routerConnect: "chat.hearth.v1.router.connect",
  routerToken: "chat.hearth.v1.router.token",
  syncToken: "chat.hearth.v1.sync.token",
  syncSetAccess: "chat.hearth.v1.sync.setAccess",
  keyPrivate: "chat.hearth.v1.key.private",
  keyRegister: "chat.hearth.v1.key.register",
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

  /** A service-auth JWT for calling `lxm` on the service `name` as the user. */
  async jwt(name: ServiceName, lxm: string, ttl = 60): Promise<string> {
    const aud = await this.serviceDid(name);
    if (this.identity.pds) return this.identity.pds.serviceJwt(aud, lxm, ttl);
    return mintServiceJwt(this.identity, { aud, lxm, ttl });
  }

  /**
   * A token for `/connect/as/{did}` (short-lived, single use): self-signed for
   * a did:key; for an atproto account, a router token fetched with a
   * PDS-minted JWT (the router takes self-signed ones from did:keys only).
   */
  async routerToken(): Promise<string> {
    if (!this.identity.pds) return this.jwt("router", NSID.routerConnect, 30);
    const res = await fetch(`${this.httpBase("router")}/xrpc/${NSID.routerToken}`, {
      headers: { Authorization: `Bearer ${await this.jwt("router", NSID.routerToken)}` },
    });
    if (!res.ok) throw new Error(`router token: HTTP ${res.status}`);
    const body = (await res.json()) as { token?: unknown };
    if (typeof body.token !== "string") throw new Error("router token: no token in answer");
    return body.token;
  }

  /** The keys the keyserver holds for us (atproto accounts: they have no usable key of their own). */
  async privateKeys(): Promise<PrivateKeys> {
    const res = await fetch(`${this.httpBase("keyserver")}/xrpc/${NSID.keyPrivate}`, {
      headers: { Authorization: `Bearer ${await this.jwt("keyserver", NSID.keyPrivate)}` },
    });
    if (!res.ok) {
      const body = (await res.json().catch(() => ({}))) as { message?: unknown };
      throw new Error(`keyserver: HTTP ${res.status}${typeof body.message === "string" ? `: ${body.message}` : ""}`);
    }
    return parsePrivate(this.identity.did, await res.json());
  }

  /**
   * did:key only: publishes our own public keys on the keyserver
   * (`key.register`: Ed25519 = the DID's key, X25519 = its Montgomery form),
   * so others find them there. Returns true once the keyserver has them.
   */
  async registerKeys(): Promise<boolean> {
    if (this.identity.pds || !this.identity.did.startsWith("did:key:")) return false;
    const res = await fetch(`${this.httpBase("keyserver")}/xrpc/${NSID.keyRegister}`, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${await this.jwt("keyserver", NSID.keyRegister)}`,
        "Content-Type": "application/json",
      },
      body: JSON.stringify({
        signingKey: ed25519DidKey(this.identity.publicKey),
        encryptionKey: x25519DidKey(x25519OfDidKey(this.identity.did)),
      }),
    });
    return res.ok;
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
