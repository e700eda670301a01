// A mocked `fetch` standing for our resolver and keyserver and an atproto PDS,
// for unit tests of sign-in and sealing. Real keys; opaque fake JWTs.
// (The browser tests run the real services and a real PDS-like server.)

import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { base58Encode } from "../src/lib/base58";
import { ed25519DidKey, x25519DidKey } from "../src/lib/keys";

export const RESOLVER = "http://front.test/svc/resolver";
export const KEYSERVER = "http://front.test/svc/keyserver";
export const ROUTER = "http://front.test/svc/router";
export const KEYSERVER_DID = "did:web:keys.test";
export const ROUTER_DID = "did:web:router.test";
export const PDS = "http://pds.test";

const mb = (prefix: number[], raw: Uint8Array) => "z" + base58Encode(new Uint8Array([...prefix, ...raw]));

export interface KeyRecord {
  signingSeed: Uint8Array;
  encryptionSecret: Uint8Array;
  /** Held by the owner (registered): no private half here. */
  ownerHeld?: boolean;
}

export function newKeys(): KeyRecord {
  return { signingSeed: ed25519.utils.randomSecretKey(), encryptionSecret: x25519.utils.randomSecretKey() };
}

export function publicAnswer(did: string, k: KeyRecord) {
  return {
    did,
    signingKey: ed25519DidKey(ed25519.getPublicKey(k.signingSeed)),
    encryptionKey: x25519DidKey(x25519.getPublicKey(k.encryptionSecret)),
    previous: [],
  };
}

export function privateAnswer(did: string, k: KeyRecord) {
  return {
    ...publicAnswer(did, k),
    signingPrivateKey: mb([0x80, 0x26], k.signingSeed),
    encryptionPrivateKey: mb([0x82, 0x26], k.encryptionSecret),
  };
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

export interface Account {
  did: string;
  handle: string;
  password: string;
  handleInvalid?: boolean;
}

export class FakeWorld {
  accounts: Account[] = [];
  keys = new Map<string, KeyRecord>();
  keyserverDown = false;
  pdsDown = false;
  /** Every request, as "METHOD url" (with the body for POSTs), for assertions. */
  log: string[] = [];
  registered: { did: string; body: unknown }[] = [];
  private access = new Map<string, string>(); // accessJwt -> did
  private refresh = new Map<string, string>();
  private expired = new Set<string>();
  private n = 0;

  addAccount(a: Account): Account {
    this.accounts.push(a);
    return a;
  }

  /** Makes every access token issued so far expired (the PDS answers 400 ExpiredToken). */
  expireAccess(): void {
    for (const t of this.access.keys()) this.expired.add(t);
  }

  private issue(did: string) {
    const accessJwt = `access-${++this.n}`;
    const refreshJwt = `refresh-${this.n}`;
    this.access.set(accessJwt, did);
    this.refresh.set(refreshJwt, did);
    return { did, accessJwt, refreshJwt, handle: this.accounts.find((a) => a.did === did)!.handle };
  }

  /** The fake service-auth JWT the PDS hands out: `svc|iss|aud|lxm`. */
  static token(iss: string, aud: string, lxm: string) {
    return `svc|${iss}|${aud}|${lxm}`;
  }

  private caller(req: Request, aud: string, lxm: string): string | null {
    const [tag, iss, a, l] = (req.headers.get("authorization") ?? "").replace(/^Bearer /, "").split("|");
    return tag === "svc" && a === aud && l === lxm ? iss : null;
  }

  fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const req = new Request(input, init);
    const url = new URL(req.url);
    const body = req.method === "POST" ? await req.text() : "";
    this.log.push(`${req.method} ${req.url}${body ? " " + body : ""}`);
    const path = url.pathname;
    if (req.url.startsWith(RESOLVER) && path.endsWith("/com.atproto.identity.resolveIdentity")) {
      const a = this.accounts.find((x) => x.handle === url.searchParams.get("identifier"));
      if (!a) return json({ error: "HandleNotFound", message: "no such handle" }, 404);
      return json({
        did: a.did,
        handle: a.handleInvalid ? "handle.invalid" : a.handle,
        didDoc: {
          id: a.did,
          alsoKnownAs: [`at://${a.handle}`],
          service: [{ id: "#atproto_pds", type: "AtprotoPersonalDataServer", serviceEndpoint: PDS }],
        },
      });
    }
    if (req.url.startsWith(PDS)) {
      if (this.pdsDown) throw new TypeError("Failed to fetch");
      const bearer = (req.headers.get("authorization") ?? "").replace(/^Bearer /, "");
      if (path === "/xrpc/com.atproto.server.createSession") {
        const { identifier, password } = JSON.parse(body);
        const a = this.accounts.find((x) => x.handle === identifier || x.did === identifier);
        if (!a || a.password !== password) {
          return json({ error: "AuthenticationRequired", message: "Invalid identifier or password" }, 401);
        }
        return json(this.issue(a.did));
      }
      if (path === "/xrpc/com.atproto.server.refreshSession") {
        const did = this.refresh.get(bearer);
        if (!did) return json({ error: "ExpiredToken", message: "refresh token gone" }, 400);
        this.refresh.delete(bearer);
        return json(this.issue(did));
      }
      if (path === "/xrpc/com.atproto.server.getServiceAuth") {
        if (this.expired.has(bearer)) return json({ error: "ExpiredToken", message: "Token has expired" }, 400);
        const did = this.access.get(bearer);
        if (!did) return json({ error: "InvalidToken", message: "bad token" }, 401);
        const aud = url.searchParams.get("aud")!;
        const lxm = url.searchParams.get("lxm")!;
        if (!(Number(url.searchParams.get("exp")) > Date.now() / 1000)) return json({ error: "BadExpiration" }, 400);
        return json({ token: FakeWorld.token(did, aud, lxm) });
      }
      return json({ error: "MethodNotImplemented" }, 501);
    }
    if (req.url.startsWith(KEYSERVER)) {
      if (this.keyserverDown) throw new TypeError("Failed to fetch");
      if (path.endsWith("/.well-known/did.json")) return json({ id: KEYSERVER_DID });
      if (path.endsWith("/chat.hearth.v1.key.public")) {
        const did = url.searchParams.get("did")!;
        const k = this.keys.get(did);
        return k ? json(publicAnswer(did, k)) : json({ error: "NotFound", message: "no keys" }, 404);
      }
      if (path.endsWith("/chat.hearth.v1.key.private")) {
        const did = this.caller(req, KEYSERVER_DID, "chat.hearth.v1.key.private");
        if (!did) return json({ error: "InvalidToken", message: "bad token" }, 401);
        if (!this.keys.has(did)) this.keys.set(did, newKeys());
        const k = this.keys.get(did)!;
        if (k.ownerHeld) return json({ error: "KeyHeldByOwner", message: "owner holds it" }, 404);
        return json(privateAnswer(did, k));
      }
      if (path.endsWith("/chat.hearth.v1.key.register")) {
        const auth = (req.headers.get("authorization") ?? "").replace(/^Bearer /, "");
        this.registered.push({ did: auth, body: JSON.parse(body) });
        return json({});
      }
    }
    if (req.url.startsWith(ROUTER)) {
      if (path.endsWith("/.well-known/did.json")) return json({ id: ROUTER_DID });
      if (path.endsWith("/chat.hearth.v1.router.token")) {
        const did = this.caller(req, ROUTER_DID, "chat.hearth.v1.router.token");
        return did ? json({ token: `router-token-for-${did}` }) : json({ error: "InvalidToken" }, 401);
      }
    }
    return json({ error: "NotFound", message: `fake world has no ${req.url}` }, 404);
  };
}

export const config = {
  services: {
    resolver: "http://127.0.0.1:1",
    keyserver: "http://keys.test",
    router: "http://router.test",
  },
  http: { resolver: RESOLVER, keyserver: KEYSERVER, router: ROUTER },
};
