// Ed25519 keys in multibase and did:key form, read exactly as hearth/keys.py reads
// them (so both implementations find the same key for the same DID).

import { base58Decode, base58Encode } from "../base58";

const ED25519_CODEC = 0xed;
const MAX_BASE58 = 4096;

/** The multicodec code and key bytes of a multibase (`z…`) key, or null. Like Python's
 * `PublicKey.from_multibase`, a varint of up to 4 bytes is read, minimal or not. */
function readMultibase(text: string): { code: number; raw: Uint8Array } | null {
  if (!text.startsWith("z") || text.length - 1 > MAX_BASE58) return null;
  let data: Uint8Array;
  try {
    data = base58Decode(text.slice(1));
  } catch {
    return null;
  }
  let code = 0;
  for (let i = 0; i < Math.min(data.length, 4); i++) {
    code |= (data[i] & 0x7f) << (7 * i);
    if (!(data[i] & 0x80)) return { code, raw: data.subarray(i + 1) };
  }
  return null;
}

/** The 32-byte Ed25519 key of a multibase key, or null when it is none. */
export function decodeEd25519Multibase(text: string): Uint8Array | null {
  const key = readMultibase(text);
  return key && key.code === ED25519_CODEC && key.raw.length === 32 ? key.raw : null;
}

/** The multibase form of an Ed25519 key (the one canonical spelling). */
export function encodeEd25519Multibase(raw: Uint8Array): string {
  return "z" + base58Encode(new Uint8Array([0xed, 0x01, ...raw]));
}

const cache = new Map<string, Uint8Array | null>();

/** The Ed25519 key of a did:key in its canonical spelling, or null (not a did:key, not
 * Ed25519, or another spelling of a key: a longer varint would be a second DID). Cached. */
export function ed25519KeyOfDid(did: string): Uint8Array | null {
  let key = cache.get(did);
  if (key === undefined) {
    // Decoding base58 costs more than the lookup; a space's authors repeat.
    const mb = did.startsWith("did:key:") ? did.slice("did:key:".length) : "";
    key = decodeEd25519Multibase(mb);
    if (key !== null && encodeEd25519Multibase(key) !== mb) key = null;
    if (cache.size >= 4096) cache.clear();
    cache.set(did, key);
  }
  return key;
}
