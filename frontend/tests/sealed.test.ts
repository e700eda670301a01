import { describe, expect, it } from "vitest";
import { identityFromSeed } from "../src/lib/identity";
import { openSealed, seal, SealedError, x25519PublicOfDidKey } from "../src/lib/sealed";
import pythonVector from "./fixtures/sealed-by-python.json";

const hex = (h: string) => Uint8Array.from(h.match(/../g)!.map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const text = (s: string) => new TextEncoder().encode(s);

const vector = pythonVector as Record<string, string>;

describe("sealed mail (hearth.sealed)", () => {
  it("opens a mail sealed by Python's hearth.sealed", async () => {
    const opened = await openSealed({
      sealed: hex(vector.sealedHex),
      recipient: vector.recipient,
      recipientSeed: hex(vector.recipientSeedHex),
      expectedSender: vector.sender,
      expectedMsgId: vector.msgId,
    });
    expect(opened.sender).toBe(vector.sender);
    expect(new TextDecoder().decode(opened.payload)).toBe(vector.payload);
  });

  it("derives the X25519 key the keyserver publishes for a did:key", () => {
    expect(toHex(x25519PublicOfDidKey(vector.recipient))).toBe(vector.recipientX25519Hex);
  });

  it("round-trips, and refuses the wrong key, altered bytes, and other ids", async () => {
    const alice = await identityFromSeed(hex(vector.senderSeedHex));
    const bob = await identityFromSeed(hex(vector.recipientSeedHex));
    const sealed = await seal({ payload: text("hello"), sender: alice.did, senderSeed: alice.seed, recipient: bob.did, msgId: "m-2" });
    const ok = await openSealed({ sealed, recipient: bob.did, recipientSeed: bob.seed, expectedSender: alice.did, expectedMsgId: "m-2" });
    expect(new TextDecoder().decode(ok.payload)).toBe("hello");

    await expect(openSealed({ sealed, recipient: alice.did, recipientSeed: alice.seed })).rejects.toThrow(SealedError);
    const altered = sealed.slice();
    altered[altered.length - 1] ^= 1;
    await expect(openSealed({ sealed: altered, recipient: bob.did, recipientSeed: bob.seed })).rejects.toThrow(SealedError);
    await expect(
      openSealed({ sealed, recipient: bob.did, recipientSeed: bob.seed, expectedMsgId: "m-3" }),
    ).rejects.toThrow(/msgId/);
    await expect(
      openSealed({ sealed, recipient: bob.did, recipientSeed: bob.seed, expectedSender: bob.did }),
    ).rejects.toThrow(/sender/);
  });
});
