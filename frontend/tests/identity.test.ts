import * as ed from "@noble/ed25519";
import { describe, expect, it } from "vitest";
import { base58Decode, base58Encode } from "../src/lib/base58";
import {
  base64urlDecode,
  didKeyFromPublicKey,
  didWebForUrl,
  generateIdentity,
  mintServiceJwt,
  publicKeyFromDidKey,
} from "../src/lib/identity";

describe("did:key", () => {
  it("matches the did:key specification's Ed25519 example", () => {
    const publicKey = base58Decode("B12NYF8RrR3h41TDCTJojY59usg3mbtbjnFs7Eud1Y6u");
    const did = "did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH";
    expect(didKeyFromPublicKey(publicKey)).toBe(did);
    expect(publicKeyFromDidKey(did)).toEqual(publicKey);
  });

  it("base58 keeps leading zero bytes", () => {
    const raw = new Uint8Array([0, 0, 1, 2, 255]);
    expect(base58Decode(base58Encode(raw))).toEqual(raw);
    expect(base58Encode(new Uint8Array([0, 0]))).toBe("11");
  });

  it("rejects other key types", () => {
    expect(() => publicKeyFromDidKey("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme")).toThrow();
  });
});

describe("service-auth JWT", () => {
  it("is an EdDSA JWT signed by the DID's key with the atproto claims", async () => {
    const id = await generateIdentity();
    const token = await mintServiceJwt(id, {
      aud: "did:web:127.0.0.1%3A8703",
      lxm: "chat.hearth.v1.router.connect",
      ttl: 30,
      now: 1_700_000_000_000,
    });
    const [h, p, s] = token.split(".");
    const header = JSON.parse(new TextDecoder().decode(base64urlDecode(h)));
    const payload = JSON.parse(new TextDecoder().decode(base64urlDecode(p)));
    expect(header).toEqual({ alg: "EdDSA", typ: "JWT" });
    expect(payload).toMatchObject({
      iss: id.did,
      aud: "did:web:127.0.0.1%3A8703",
      lxm: "chat.hearth.v1.router.connect",
      iat: 1_700_000_000,
      exp: 1_700_000_030,
    });
    expect(payload.jti).toMatch(/^[0-9a-f]{32}$/);
    const ok = await ed.verifyAsync(base64urlDecode(s), new TextEncoder().encode(`${h}.${p}`), publicKeyFromDidKey(id.did));
    expect(ok).toBe(true);
    const again = await mintServiceJwt(id, { aud: "x", lxm: "y" });
    expect(JSON.parse(new TextDecoder().decode(base64urlDecode(again.split(".")[1]))).jti).not.toBe(payload.jti);
  });

  it("names services by the did:web of their URL", () => {
    expect(didWebForUrl("http://127.0.0.1:8703")).toBe("did:web:127.0.0.1%3A8703");
    expect(didWebForUrl("https://router.example.com/")).toBe("did:web:router.example.com");
    expect(didWebForUrl("https://example.com/hearth/router")).toBe("did:web:example.com:hearth:router");
  });
});
