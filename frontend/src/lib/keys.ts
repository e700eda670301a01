// Other people's public keys, from the keyserver (`chat.hearth.v1.key.public`),
// and the X25519 secrets that open mail sealed to us.
//
// Sealing asks the keyserver for the recipient's current encryption key; only
// a did:key recipient may fall back to the X25519 form of its own key when the
// keyserver has none or cannot be reached (a did:plc/did:web has no key of its
// own to fall back to). Verifying a sender: a did:key is its own signing key;
// any other DID's signing keys (current and previous) come from the keyserver.

import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { base58Decode, base58Encode } from "./base58";

const ED25519_PUB = [0xed, 0x01];
const X25519_PUB = [0xec, 0x01];
/** Multicodec varints of `ed25519-priv` (0x1300) and `x25519-priv` (0x1302). */
const ED25519_PRIV = [0x80, 0x26];
const X25519_PRIV = [0x82, 0x26];

/** Public answers are kept this long (the keyserver docs allow a few minutes). */
const CACHE_MS = 5 * 60_000;

export class KeyError extends Error {}

function withPrefix(prefix: number[], raw: Uint8Array): string {
  return "z" + base58Encode(new Uint8Array([...prefix, ...raw]));
}

function decodeMultibase(text: string, prefix: number[], what: string): Uint8Array {
  const mb = text.startsWith("did:key:") ? text.slice("did:key:".length) : text;
  if (!mb.startsWith("z")) throw new KeyError(`${what}: not a base58btc multibase key`);
  let raw: Uint8Array;
  try {
    raw = base58Decode(mb.slice(1));
  } catch {
    throw new KeyError(`${what}: bad base58`);
  }
  if (raw.length !== prefix.length + 32 || prefix.some((b, i) => raw[i] !== b)) {
    throw new KeyError(`${what}: wrong key type or length`);
  }
  return raw.slice(prefix.length);
}

export const decodeEd25519DidKey = (s: string) => decodeMultibase(s, ED25519_PUB, "signing key");
export const decodeX25519DidKey = (s: string) => decodeMultibase(s, X25519_PUB, "encryption key");
export const x25519DidKey = (pub: Uint8Array) => "did:key:" + withPrefix(X25519_PUB, pub);
export const ed25519DidKey = (pub: Uint8Array) => "did:key:" + withPrefix(ED25519_PUB, pub);

/** The X25519 form of an Ed25519 did:key (what the keyserver publishes for an unregistered one). */
export function x25519OfDidKey(did: string): Uint8Array {
  return ed25519.utils.toMontgomery(decodeEd25519DidKey(did));
}

export interface PublicKeys {
  did: string;
  /** Current signing key first, then previous generations (newest first). */
  signing: Uint8Array[];
  encryption: Uint8Array;
}

export interface PrivateKeys {
  did: string;
  signingSeed: Uint8Array;
  signingPublic: Uint8Array;
  /** X25519 secrets, current first, then each previous generation the server still holds. */
  encryptionSecrets: Uint8Array[];
}

interface Pair {
  signingKey?: unknown;
  encryptionKey?: unknown;
  signingPrivateKey?: unknown;
  encryptionPrivateKey?: unknown;
}

function str(v: unknown, what: string): string {
  if (typeof v !== "string") throw new KeyError(`keyserver answer has no ${what}`);
  return v;
}

export function parsePublic(did: string, body: unknown): PublicKeys {
  const b = (body ?? {}) as Pair & { did?: unknown; previous?: unknown };
  if (b.did !== did) throw new KeyError("keyserver answered for another DID");
  const previous = Array.isArray(b.previous) ? (b.previous as Pair[]) : [];
  return {
    did,
    signing: [b, ...previous].map((p) => decodeEd25519DidKey(str(p.signingKey, "signingKey"))),
    encryption: decodeX25519DidKey(str(b.encryptionKey, "encryptionKey")),
  };
}

/** Parses `key.private`, checking that every private key matches the public key beside it. */
export function parsePrivate(did: string, body: unknown): PrivateKeys {
  const pub = parsePublic(did, body);
  const b = body as Pair & { previous?: Pair[] };
  const signingSeed = decodeMultibase(str(b.signingPrivateKey, "signingPrivateKey"), ED25519_PRIV, "signing private key");
  const signingPublic = ed25519.getPublicKey(signingSeed);
  if (!equal(signingPublic, pub.signing[0])) throw new KeyError("signing private key does not match its public key");
  const pairs: Pair[] = [b, ...(Array.isArray(b.previous) ? b.previous : [])];
  const encryptionSecrets: Uint8Array[] = [];
  for (const p of pairs) {
    if (typeof p.encryptionPrivateKey !== "string") continue; // an older generation the owner held
    const secret = decodeMultibase(p.encryptionPrivateKey, X25519_PRIV, "encryption private key");
    const expected = decodeX25519DidKey(str(p.encryptionKey, "encryptionKey"));
    if (!equal(x25519Public(secret), expected)) throw new KeyError("encryption private key does not match its public key");
    encryptionSecrets.push(secret);
  }
  return { did, signingSeed, signingPublic, encryptionSecrets };
}

const x25519Public = (secret: Uint8Array) => x25519.getPublicKey(secret);

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

type Fetch = typeof fetch;

/** `key.public` lookups, cached for a few minutes. */
export class KeyDirectory {
  private cache = new Map<string, { at: number; keys: PublicKeys | null }>();

  /** `base`: the keyserver's HTTP base (null: none configured). */
  constructor(
    private base: string | null,
    private fetchFn: Fetch = (...a) => fetch(...a),
  ) {}

  /** The DID's published keys; null when the keyserver has none. Throws when it cannot be asked. */
  async lookup(did: string): Promise<PublicKeys | null> {
    const known = this.cache.get(did);
    if (known && Date.now() - known.at < CACHE_MS) return known.keys;
    if (!this.base) throw new KeyError("no keyserver configured");
    let res: Response;
    try {
      res = await this.fetchFn(`${this.base}/xrpc/chat.hearth.v1.key.public?did=${encodeURIComponent(did)}`);
    } catch (e) {
      throw new KeyError(`keyserver unreachable: ${e instanceof Error ? e.message : e}`);
    }
    if (res.status === 404) {
      this.cache.set(did, { at: Date.now(), keys: null });
      return null;
    }
    if (!res.ok) throw new KeyError(`keyserver: HTTP ${res.status}`);
    const keys = parsePublic(did, await res.json());
    this.cache.set(did, { at: Date.now(), keys });
    return keys;
  }

  /** The X25519 key to seal mail for `did` with. */
  async encryptionKeyFor(did: string): Promise<Uint8Array> {
    try {
      const keys = await this.lookup(did);
      if (keys) return keys.encryption;
    } catch (e) {
      if (!did.startsWith("did:key:")) throw e;
    }
    if (did.startsWith("did:key:")) return x25519OfDidKey(did);
    throw new KeyError(`the keyserver has no encryption key for ${did}`);
  }

  /** Ed25519 keys a signature by `did` may verify under. */
  async signingKeysOf(did: string): Promise<Uint8Array[]> {
    if (did.startsWith("did:key:")) return [decodeEd25519DidKey(did)];
    const keys = await this.lookup(did);
    if (!keys) throw new KeyError(`the keyserver has no signing key for ${did}`);
    return keys.signing;
  }

  forget(did: string): void {
    this.cache.delete(did);
  }
}

let directory = new KeyDirectory(null);

/** The directory sealing uses; set once the keyserver's address is known. */
export function keyDirectory(): KeyDirectory {
  return directory;
}

export function useKeyserver(base: string | null, fetchFn?: Fetch): KeyDirectory {
  directory = new KeyDirectory(base, fetchFn);
  return directory;
}

/** Our own X25519 secrets by DID (current first), for opening mail sealed to us. */
const own = new Map<string, Uint8Array[]>();

export function rememberOwnSecrets(did: string, secrets: Uint8Array[]): void {
  own.set(did, secrets);
}

export function ownSecrets(did: string): Uint8Array[] | undefined {
  return own.get(did);
}
