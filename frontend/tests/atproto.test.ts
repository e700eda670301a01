import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ed25519 } from "@noble/curves/ed25519.js";
import { signIn, type StoredAccount } from "../src/lib/account";
import { PdsSession, pdsEndpoint, SignInError, type StoredSession } from "../src/lib/atproto";
import { ownSecrets } from "../src/lib/keys";
import { ServiceAuth } from "../src/lib/services";
import { config, FakeWorld, KEYSERVER_DID, PDS, ROUTER_DID } from "./fake-world";

let world: FakeWorld;
const alice = { did: "did:plc:aliceaaaaaaaaaaaaaaaaaaa", handle: "alice.test", password: "abcd-efgh-ijkl-mnop" };

beforeEach(() => {
  world = new FakeWorld();
  world.addAccount({ ...alice });
  vi.stubGlobal("fetch", world.fetch);
});
afterEach(() => vi.unstubAllGlobals());

async function failure(p: Promise<unknown>): Promise<SignInError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(SignInError);
  return e as SignInError;
}

describe("atproto sign-in with an app password", () => {
  it("resolves the handle, opens a PDS session and gets the account's keys from the keyserver", async () => {
    let stored: StoredAccount | null = null;
    const identity = await signIn(" @Alice.Test ", alice.password, config, async (a) => {
      stored = a;
    });
    expect(identity.did).toBe(alice.did);
    expect(identity.handle).toBe("alice.test");
    // The keys are the keyserver's for that DID, and opening mail uses its X25519 secret.
    const held = world.keys.get(alice.did)!;
    expect(identity.seed).toEqual(held.signingSeed);
    expect(identity.publicKey).toEqual(ed25519.getPublicKey(held.signingSeed));
    expect(ownSecrets(alice.did)).toEqual([held.encryptionSecret]);
    // The keyserver saw a PDS-minted JWT for it and key.private.
    const asked = `GET ${PDS}/xrpc/com.atproto.server.getServiceAuth?aud=${encodeURIComponent(KEYSERVER_DID)}&lxm=chat.hearth.v1.key.private&exp=`;
    expect(world.log.filter((l) => l.startsWith(asked))).toHaveLength(1);
    // Kept: the session's tokens and keys; never the password.
    expect(stored).not.toBeNull();
    const s = stored! as StoredAccount;
    expect(s.session).toMatchObject({ did: alice.did, pds: PDS, accessJwt: "access-1", refreshJwt: "refresh-1" });
    expect(JSON.stringify(s)).not.toContain(alice.password);
    // The password went to the PDS's createSession and nowhere else.
    const withPassword = world.log.filter((l) => l.includes(alice.password));
    expect(withPassword).toHaveLength(1);
    expect(withPassword[0]).toMatch(/^POST http:\/\/pds\.test\/xrpc\/com\.atproto\.server\.createSession /);
  });

  it("says which step failed: unknown handle, handle.invalid, wrong password, PDS unreachable", async () => {
    const nobody = await failure(signIn("nobody.test", "x", config, async () => {}));
    expect(nobody.code).toBe("unknown-handle");
    expect(nobody.message).toContain("nobody.test");

    expect((await failure(signIn("not a handle", "x", config, async () => {}))).code).toBe("bad-handle");

    world.addAccount({ did: "did:plc:bobbbbbbbbbbbbbbbbbbbbbb", handle: "bob.test", password: "p", handleInvalid: true });
    const invalid = await failure(signIn("bob.test", "p", config, async () => {}));
    expect(invalid.code).toBe("handle-invalid");
    expect(invalid.message).toContain("handle.invalid");

    const wrong = await failure(signIn("alice.test", "wrong-password", config, async () => {}));
    expect(wrong.code).toBe("wrong-password");
    expect(wrong.message).toBe("Wrong handle or app password.");
    expect(wrong.message).not.toContain("wrong-password");

    world.pdsDown = true;
    const down = await failure(signIn("alice.test", alice.password, config, async () => {}));
    expect(down.code).toBe("pds-unreachable");
    expect(down.message).toContain(PDS);
  });

  it("finds the PDS in a DID document by #atproto_pds only", () => {
    const svc = (id: string, serviceEndpoint: unknown) => ({ id: "did:plc:x", service: [{ id, serviceEndpoint }] });
    expect(pdsEndpoint(svc("#atproto_pds", "https://pds.example/"))).toBe("https://pds.example");
    expect(pdsEndpoint(svc("did:plc:x#atproto_pds", "https://pds.example"))).toBe("https://pds.example");
    expect(pdsEndpoint(svc("#other", "https://pds.example"))).toBeNull();
    expect(pdsEndpoint(svc("#atproto_pds", "javascript:alert(1)"))).toBeNull();
    expect(pdsEndpoint(svc("#atproto_pds", 42))).toBeNull();
    expect(pdsEndpoint({})).toBeNull();
  });
});

describe("PDS session", () => {
  async function session(): Promise<{ pds: PdsSession; saved: StoredSession[] }> {
    const res = await world.fetch(`${PDS}/xrpc/com.atproto.server.createSession`, {
      method: "POST",
      body: JSON.stringify({ identifier: alice.handle, password: alice.password }),
    });
    const body = await res.json();
    const saved: StoredSession[] = [];
    const pds = new PdsSession({ ...body, pds: PDS }, async (s) => {
      saved.push(s);
    });
    return { pds, saved };
  }

  it("refreshes an expired access token once, however many calls need it, and saves the new tokens", async () => {
    const { pds, saved } = await session();
    world.expireAccess();
    const tokens = await Promise.all([
      pds.serviceJwt(KEYSERVER_DID, "chat.hearth.v1.key.private", 60),
      pds.serviceJwt(ROUTER_DID, "chat.hearth.v1.router.token", 60),
    ]);
    expect(tokens).toEqual([
      FakeWorld.token(alice.did, KEYSERVER_DID, "chat.hearth.v1.key.private"),
      FakeWorld.token(alice.did, ROUTER_DID, "chat.hearth.v1.router.token"),
    ]);
    expect(world.log.filter((l) => l.includes("refreshSession"))).toHaveLength(1);
    expect(saved).toHaveLength(1);
    expect(saved[0]).toMatchObject({ accessJwt: "access-2", refreshJwt: "refresh-2" });
  });

  it("refreshes once when a slow call comes back with the old token after the refresh", async () => {
    const res = await world.fetch(`${PDS}/xrpc/com.atproto.server.createSession`, {
      method: "POST",
      body: JSON.stringify({ identifier: alice.handle, password: alice.password }),
    });
    const body = await res.json();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let serviceAuthCalls = 0;
    const slowFetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
      const answer = await world.fetch(input, init);
      // The second getServiceAuth (sent with the expired token) answers only later.
      if (String(input).includes("getServiceAuth") && serviceAuthCalls++ === 1) await gate;
      return answer;
    };
    const pds = new PdsSession({ ...body, pds: PDS }, async () => {}, slowFetch);
    world.expireAccess();
    const first = pds.serviceJwt(KEYSERVER_DID, "chat.hearth.v1.key.private", 60);
    const second = pds.serviceJwt(ROUTER_DID, "chat.hearth.v1.router.token", 60);
    expect(await first).toBe(FakeWorld.token(alice.did, KEYSERVER_DID, "chat.hearth.v1.key.private"));
    release();
    expect(await second).toBe(FakeWorld.token(alice.did, ROUTER_DID, "chat.hearth.v1.router.token"));
    expect(world.log.filter((l) => l.includes("refreshSession"))).toHaveLength(1);
  });

  it("asks to sign in again when the refresh token is gone too", async () => {
    const { pds } = await session();
    world.expireAccess();
    await pds.refresh(); // uses refresh-1
    world.expireAccess();
    // Forge the loss of the refresh token: a session holding the used one.
    const stale = new PdsSession({ did: alice.did, handle: alice.handle, pds: PDS, accessJwt: "access-1", refreshJwt: "refresh-1" });
    expect((await failure(stale.serviceJwt(ROUTER_DID, "x.y.z", 60))).code).toBe("session-expired");
  });

  it("says once that the PDS ended the session, and stops calling it", async () => {
    const stale = new PdsSession({ did: alice.did, handle: alice.handle, pds: PDS, accessJwt: "gone", refreshJwt: "gone" });
    let told = 0;
    stale.onEnded(() => told++);
    const [a, b] = await Promise.all([
      failure(stale.serviceJwt(ROUTER_DID, "x.y.z", 60)),
      failure(stale.serviceJwt(KEYSERVER_DID, "x.y.z", 60)),
    ]);
    expect([a.code, b.code]).toEqual(["session-expired", "session-expired"]);
    expect(told).toBe(1);
    expect(stale.ended).toBe(true);
    // From now on no request reaches the PDS; a late listener is told at once.
    const before = world.log.length;
    expect((await failure(stale.serviceJwt(ROUTER_DID, "x.y.z", 60))).code).toBe("session-expired");
    expect((await failure(stale.refresh())).code).toBe("session-expired");
    expect(world.log.length).toBe(before);
    stale.onEnded(() => told++);
    expect(told).toBe(2);
  });

  it("does not end the session when the PDS fails to refresh with a server error", async () => {
    const res = await world.fetch(`${PDS}/xrpc/com.atproto.server.createSession`, {
      method: "POST",
      body: JSON.stringify({ identifier: alice.handle, password: alice.password }),
    });
    world.expireAccess();
    const failing = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> =>
      String(input).includes("refreshSession") ? new Response("{}", { status: 502 }) : world.fetch(input, init);
    const flaky = new PdsSession({ ...(await res.json()), pds: PDS }, async () => {}, failing);
    let told = 0;
    flaky.onEnded(() => told++);
    expect((await failure(flaky.serviceJwt(ROUTER_DID, "x.y.z", 60))).code).toBe("pds-error");
    expect(told).toBe(0);
    expect(flaky.ended).toBe(false);
  });

  it("makes ServiceAuth use PDS-minted JWTs, and router tokens fetched with them", async () => {
    const { pds } = await session();
    const auth = new ServiceAuth({ did: alice.did, seed: new Uint8Array(32), publicKey: new Uint8Array(32), pds }, config);
    expect(await auth.jwt("keyserver", "chat.hearth.v1.key.private")).toBe(
      FakeWorld.token(alice.did, KEYSERVER_DID, "chat.hearth.v1.key.private"),
    );
    expect(await auth.routerToken()).toBe(`router-token-for-${alice.did}`);
  });
});
