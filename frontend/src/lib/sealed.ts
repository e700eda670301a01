// Sealed mail, byte-compatible with Python's `hearth.sealed`: the payload is
// signed by the sender (Ed25519, both DIDs and the msgId bound in) and
// encrypted for the recipient's X25519 key with a NaCl SealedBox, so the
// router and push services only ever carry ciphertext.
//
// The recipient's X25519 key comes from the keyserver (`keys.ts`); for a
// did:key without keys there, it is the Montgomery form of its Ed25519 key
// (libsodium's crypto_sign_ed25519_{pk,sk}_to_curve25519), which is what the
// keyserver publishes for an unregistered did:key too. Opening uses our own
// secrets as remembered in `keys.ts` (an atproto user's come from the
// keyserver), else the form derived from our did:key seed.

import * as ed from "@noble/ed25519";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { hsalsa, secretbox } from "@noble/ciphers/salsa.js";
import { blake2b } from "@noble/hashes/blake2.js";
import { publicKeyFromDidKey } from "./identity";
import { keyDirectory, ownSecrets } from "./keys";

const VERSION = 1;
const DOMAIN = new TextEncoder().encode("hearth.sealed.v1\0");
const SIGNATURE_LEN = 64;

export class SealedError extends Error {}

function lp(text: string, limit: number, what: string): Uint8Array {
  const raw = new TextEncoder().encode(text);
  if (raw.length === 0 || raw.length > limit) throw new SealedError(`${what} must be 1..${limit} bytes`);
  const out = new Uint8Array(2 + raw.length);
  new DataView(out.buffer).setUint16(0, raw.length, false);
  out.set(raw, 2);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** What the sender signs (the same bytes as `hearth.sealed.signed_bytes`). */
export function signedBytes(sender: string, recipient: string, msgId: string, payload: Uint8Array) {
  return concat(DOMAIN, lp(sender, 2048, "sender DID"), lp(recipient, 2048, "recipient DID"), lp(msgId, 256, "msgId"), payload);
}

/** The X25519 public key of an Ed25519 did:key. */
export function x25519PublicOfDidKey(did: string): Uint8Array {
  return ed25519.utils.toMontgomery(publicKeyFromDidKey(did));
}

/** The X25519 private key that goes with an Ed25519 seed. */
export function x25519SecretOfSeed(seed: Uint8Array): Uint8Array {
  return ed25519.utils.toMontgomerySecret(seed);
}

const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]); // "expand 32-byte k"

/** crypto_box_beforenm: HSalsa20 of the X25519 shared secret with a zero nonce. */
function boxKey(secret: Uint8Array, publicKey: Uint8Array): Uint8Array {
  const shared = x25519.getSharedSecret(secret, publicKey);
  const k = new Uint32Array(8);
  const sv = new DataView(shared.buffer, shared.byteOffset, 32);
  for (let i = 0; i < 8; i++) k[i] = sv.getUint32(i * 4, true);
  const out = new Uint32Array(8);
  hsalsa(SIGMA, k, new Uint32Array(4), out);
  const key = new Uint8Array(32);
  const kv = new DataView(key.buffer);
  for (let i = 0; i < 8; i++) kv.setUint32(i * 4, out[i], true);
  return key;
}

function sealNonce(ephemeralPublic: Uint8Array, recipientPublic: Uint8Array): Uint8Array {
  return blake2b(concat(ephemeralPublic, recipientPublic), { dkLen: 24 });
}

/** NaCl crypto_box_seal. */
export function sealedBoxEncrypt(message: Uint8Array, recipientPublic: Uint8Array): Uint8Array {
  const esk = x25519.utils.randomSecretKey();
  const epk = x25519.getPublicKey(esk);
  const boxed = secretbox(boxKey(esk, recipientPublic), sealNonce(epk, recipientPublic)).seal(message);
  return concat(epk, boxed);
}

/** NaCl crypto_box_seal_open; throws SealedError when it is not for this key or was altered. */
export function sealedBoxDecrypt(sealed: Uint8Array, secret: Uint8Array): Uint8Array {
  if (sealed.length < 48) throw new SealedError("sealed box too short");
  const epk = sealed.subarray(0, 32);
  const mine = x25519.getPublicKey(secret);
  try {
    return secretbox(boxKey(secret, epk), sealNonce(epk, mine)).open(sealed.subarray(32));
  } catch {
    throw new SealedError("cannot decrypt: not sealed for this key, or altered");
  }
}

/**
 * Signs `payload` as `sender` (Ed25519 seed) and seals it for `recipient`:
 * for `recipientKey` when given, else for the key the keyserver publishes
 * (throws when there is none and the recipient is no did:key).
 */
export async function seal(opts: {
  payload: Uint8Array;
  sender: string;
  senderSeed: Uint8Array;
  recipient: string;
  msgId: string;
  recipientKey?: Uint8Array;
}): Promise<Uint8Array> {
  const signature = await ed.signAsync(
    signedBytes(opts.sender, opts.recipient, opts.msgId, opts.payload),
    opts.senderSeed,
  );
  const inner = concat(
    new Uint8Array([VERSION]),
    lp(opts.sender, 2048, "sender DID"),
    lp(opts.msgId, 256, "msgId"),
    signature,
    opts.payload,
  );
  const key = opts.recipientKey ?? (await keyDirectory().encryptionKeyFor(opts.recipient));
  return sealedBoxEncrypt(inner, key);
}

/** Tries each of our secrets (current first): mail may be sealed to an older generation. */
function openWithAny(sealed: Uint8Array, secrets: Uint8Array[]): Uint8Array {
  for (const secret of secrets) {
    try {
      return sealedBoxDecrypt(sealed, secret);
    } catch {
      // sealed to another of our generations, or not to us at all
    }
  }
  throw new SealedError("cannot decrypt: not sealed for this key, or altered");
}

export interface OpenedMail {
  sender: string;
  msgId: string;
  payload: Uint8Array;
}

/**
 * Decrypts with our X25519 secrets (`recipientSecrets`, else those remembered
 * for `recipient`, else the one derived from `recipientSeed`) and verifies the
 * sender's signature (a did:key is its own key; other senders' keys come from
 * the keyserver). Pass the router's fromDid and msgId: a mail presented under
 * other ids is rejected.
 */
export async function openSealed(opts: {
  sealed: Uint8Array;
  recipient: string;
  recipientSeed: Uint8Array;
  recipientSecrets?: Uint8Array[];
  expectedSender?: string;
  expectedMsgId?: string;
}): Promise<OpenedMail> {
  const secrets = opts.recipientSecrets ?? ownSecrets(opts.recipient) ?? [x25519SecretOfSeed(opts.recipientSeed)];
  const inner = openWithAny(opts.sealed, secrets);
  if (inner[0] !== VERSION) throw new SealedError("unknown sealed mail version");
  const view = new DataView(inner.buffer, inner.byteOffset, inner.byteLength);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let pos = 1;
  const read = (what: string) => {
    if (inner.length < pos + 2) throw new SealedError(`truncated ${what}`);
    const n = view.getUint16(pos, false);
    pos += 2;
    if (n === 0 || inner.length < pos + n) throw new SealedError(`bad ${what} length`);
    const text = decoder.decode(inner.subarray(pos, pos + n));
    pos += n;
    return text;
  };
  const sender = read("sender DID");
  const msgId = read("msgId");
  if (inner.length < pos + SIGNATURE_LEN) throw new SealedError("truncated signature");
  const signature = inner.subarray(pos, pos + SIGNATURE_LEN);
  const payload = inner.slice(pos + SIGNATURE_LEN);
  if (opts.expectedSender !== undefined && opts.expectedSender !== sender) {
    throw new SealedError("sealed mail names another sender");
  }
  if (opts.expectedMsgId !== undefined && opts.expectedMsgId !== msgId) {
    throw new SealedError("sealed mail carries another msgId");
  }
  const message = signedBytes(sender, opts.recipient, msgId, payload);
  const keys = sender.startsWith("did:key:")
    ? [publicKeyFromDidKey(sender)]
    : await keyDirectory()
        .signingKeysOf(sender)
        .catch((e) => {
          throw new SealedError(`no signing key for the sender: ${e instanceof Error ? e.message : e}`);
        });
  let ok = false;
  for (const key of keys) {
    if (await ed.verifyAsync(signature, message, key)) {
      ok = true;
      break;
    }
  }
  if (!ok) throw new SealedError("sender signature does not verify");
  return { sender, msgId, payload };
}
