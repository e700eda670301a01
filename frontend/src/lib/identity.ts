// The user's identity: a did:key (Ed25519) created in the browser on first run
// and kept in IndexedDB, plus self-signed service-auth JWTs for our services;
// or an atproto account signed in through its PDS (`account.ts`), whose keys
// come from the keyserver and whose service-auth JWTs the PDS mints.

import * as ed from "@noble/ed25519";
import { base58Decode, base58Encode } from "./base58";

const ED25519_MULTICODEC = [0xed, 0x01];

export interface Identity {
  did: string;
  /** 32-byte Ed25519 signing seed: the did:key's own (never leaves this device), or the keyserver's for atproto. */
  seed: Uint8Array;
  publicKey: Uint8Array;
  /** atproto only: the handle, and the PDS session that mints our service-auth JWTs. */
  handle?: string;
  pds?: ServiceJwtSource;
}

/** Something that mints service-auth JWTs for us (an atproto PDS). */
export interface ServiceJwtSource {
  serviceJwt(aud: string, lxm: string, ttl: number): Promise<string>;
  /** Calls `fn` once the source can mint no more (the PDS ended the session). */
  onEnded?(fn: () => void): void;
}

export function didKeyFromPublicKey(publicKey: Uint8Array): string {
  if (publicKey.length !== 32) throw new Error("Ed25519 public key must be 32 bytes");
  return "did:key:z" + base58Encode(new Uint8Array([...ED25519_MULTICODEC, ...publicKey]));
}

export function publicKeyFromDidKey(did: string): Uint8Array {
  if (!did.startsWith("did:key:z")) throw new Error(`not a base58btc did:key: ${did}`);
  const raw = base58Decode(did.slice("did:key:z".length));
  if (raw.length !== 34 || raw[0] !== 0xed || raw[1] !== 0x01) {
    throw new Error(`not an Ed25519 did:key: ${did}`);
  }
  return raw.slice(2);
}

export async function identityFromSeed(seed: Uint8Array): Promise<Identity> {
  const publicKey = await ed.getPublicKeyAsync(seed);
  return { did: didKeyFromPublicKey(publicKey), seed, publicKey };
}

export async function generateIdentity(): Promise<Identity> {
  return identityFromSeed(crypto.getRandomValues(new Uint8Array(32)));
}

export function base64url(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function base64urlDecode(text: string): Uint8Array {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export interface JwtOptions {
  aud: string;
  lxm: string;
  /** Lifetime in seconds; services want it short. */
  ttl?: number;
  now?: number;
}

/**
 * A service-auth JWT signed by the user's own did:key (EdDSA), the form
 * `hearth.jwt.mint_service_jwt` produces: iss = the DID, aud = the service's
 * DID, lxm = the XRPC method, short exp, random single-use jti.
 */
export async function mintServiceJwt(identity: Identity, opts: JwtOptions): Promise<string> {
  const iat = Math.floor((opts.now ?? Date.now()) / 1000);
  const header = { alg: "EdDSA", typ: "JWT" };
  const payload = {
    iss: identity.did,
    aud: opts.aud,
    exp: iat + (opts.ttl ?? 60),
    iat,
    jti: hex(crypto.getRandomValues(new Uint8Array(16))),
    lxm: opts.lxm,
  };
  const enc = new TextEncoder();
  const signingInput =
    base64url(enc.encode(JSON.stringify(header))) + "." + base64url(enc.encode(JSON.stringify(payload)));
  const signature = await ed.signAsync(enc.encode(signingInput), identity.seed);
  return signingInput + "." + base64url(signature);
}

/** did:web of a service base URL, the way Python's services name themselves. */
export function didWebForUrl(url: string): string {
  const u = new URL(url);
  const host = u.port ? `${u.hostname}%3A${u.port}` : u.hostname;
  const path = u.pathname.replace(/\/+$/, "");
  return "did:web:" + host + (path ? path.replace(/\//g, ":") : "");
}

// --- persistence -----------------------------------------------------------

const DB_NAME = "hearth-identity";
const STORE = "identity";

function openDb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

export async function idbGet<T>(key: string): Promise<T | undefined> {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const req = db.transaction(STORE, "readonly").objectStore(STORE).get(key);
    req.onsuccess = () => resolve(req.result as T | undefined);
    req.onerror = () => reject(req.error);
  });
}

export async function idbPut(key: string, value: unknown): Promise<void> {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, "readwrite");
    tx.objectStore(STORE).put(value, key);
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
  });
}

export async function idbDelete(key: string): Promise<void> {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, "readwrite");
    tx.objectStore(STORE).delete(key);
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
  });
}

/** The stored did:key identity, created (and stored) on first call. */
export async function loadOrCreateIdentity(): Promise<Identity> {
  const seed = await idbGet<Uint8Array>("seed");
  if (seed) return identityFromSeed(new Uint8Array(seed));
  const identity = await generateIdentity();
  await idbPut("seed", identity.seed);
  return identity;
}

/** Small per-device settings kept beside the identity (e.g. the catalog URL). */
export const deviceSettings = {
  get: <T>(key: string) => idbGet<T>("setting:" + key),
  set: (key: string, value: unknown) => idbPut("setting:" + key, value),
};
