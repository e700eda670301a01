import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { generateIdentity } from "../src/lib/identity";
import {
  KeyError,
  parsePrivate,
  rememberOwnSecrets,
  useKeyserver,
  x25519DidKey,
  x25519OfDidKey,
} from "../src/lib/keys";
import { openSealed, seal, SealedError, x25519SecretOfSeed } from "../src/lib/sealed";
import { ServiceAuth } from "../src/lib/services";
import { decodeFrame } from "../src/lib/frame";
import { notifyMentions } from "../src/lib/notifications";
import type { RouterConnection } from "../src/lib/router-connection";
import { config, FakeWorld, KEYSERVER, newKeys, privateAnswer } from "./fake-world";

const text = (s: string) => new TextEncoder().encode(s);
let world: FakeWorld;

beforeEach(() => {
  world = new FakeWorld();
  vi.stubGlobal("fetch", world.fetch);
  useKeyserver(KEYSERVER);
});
afterEach(() => {
  vi.unstubAllGlobals();
  useKeyserver(null);
});

describe("sealing with the keyserver's keys", () => {
  it("seals for an atproto recipient's keyserver key and opens with the matching secret", async () => {
    const carol = "did:plc:carolccccccccccccccccccc";
    const dave = "did:web:dave.test";
    const carolKeys = newKeys();
    const daveKeys = newKeys();
    world.keys.set(carol, carolKeys);
    world.keys.set(dave, daveKeys);
    // Carol (atproto) writes to Dave (atproto): both keys come from the keyserver.
    const sealed = await seal({ payload: text("hi Dave"), sender: carol, senderSeed: carolKeys.signingSeed, recipient: dave, msgId: "m1" });
    expect(world.log).toContain(`GET ${KEYSERVER}/xrpc/chat.hearth.v1.key.public?did=${encodeURIComponent(dave)}`);

    rememberOwnSecrets(dave, [newKeys().encryptionSecret, daveKeys.encryptionSecret]); // current, then previous
    const opened = await openSealed({ sealed, recipient: dave, recipientSeed: daveKeys.signingSeed, expectedSender: carol, expectedMsgId: "m1" });
    expect(new TextDecoder().decode(opened.payload)).toBe("hi Dave");

    // The signing-seed-derived key is not Dave's encryption key: it does not open it.
    await expect(
      openSealed({ sealed, recipient: dave, recipientSeed: daveKeys.signingSeed, recipientSecrets: [x25519SecretOfSeed(daveKeys.signingSeed)] }),
    ).rejects.toThrow(SealedError);
    // A sender whose keyserver signing key differs from the one that signed is refused.
    world.keys.set(carol, newKeys());
    useKeyserver(KEYSERVER); // a fresh cache
    await expect(openSealed({ sealed, recipient: dave, recipientSeed: daveKeys.signingSeed })).rejects.toThrow(/signature/);
  });

  it("uses the keys a did:key registered, and its own key only when the keyserver has none or is down", async () => {
    const alice = await generateIdentity();
    const bob = await generateIdentity();
    const seal1 = () => seal({ payload: text("x"), sender: alice.did, senderSeed: alice.seed, recipient: bob.did, msgId: "m" });

    // Registered keys other than its own: those are used.
    const registered = newKeys();
    world.keys.set(bob.did, registered);
    const toRegistered = await seal1();
    await expect(openSealed({ sealed: toRegistered, recipient: bob.did, recipientSeed: bob.seed })).rejects.toThrow(SealedError);
    const ok = await openSealed({ sealed: toRegistered, recipient: bob.did, recipientSeed: bob.seed, recipientSecrets: [registered.encryptionSecret] });
    expect(ok.sender).toBe(alice.did);

    // None on the keyserver, or it is unreachable: the did:key's own X25519 form.
    world.keys.delete(bob.did);
    useKeyserver(KEYSERVER);
    const toOwn = await seal1();
    expect((await openSealed({ sealed: toOwn, recipient: bob.did, recipientSeed: bob.seed })).sender).toBe(alice.did);
    world.keyserverDown = true;
    useKeyserver(KEYSERVER);
    const offline = await seal1();
    expect((await openSealed({ sealed: offline, recipient: bob.did, recipientSeed: bob.seed })).sender).toBe(alice.did);
  });

  it("refuses to seal for an atproto DID the keyserver cannot answer for", async () => {
    const alice = await generateIdentity();
    const sealFor = (did: string) => seal({ payload: text("x"), sender: alice.did, senderSeed: alice.seed, recipient: did, msgId: "m" });
    await expect(sealFor("did:plc:nokeysnnnnnnnnnnnnnnnnnn")).rejects.toThrow(KeyError);
    world.keyserverDown = true;
    useKeyserver(KEYSERVER);
    await expect(sealFor("did:plc:nokeysnnnnnnnnnnnnnnnnnn")).rejects.toThrow(/unreachable/);
  });
});

describe("our own keys on the keyserver", () => {
  it("registers a did:key's own public keys", async () => {
    const me = await generateIdentity();
    const auth = new ServiceAuth(me, config);
    expect(await auth.registerKeys()).toBe(true);
    expect(world.registered).toHaveLength(1);
    expect(world.registered[0].body).toEqual({
      signingKey: me.did,
      encryptionKey: x25519DidKey(x25519.getPublicKey(x25519SecretOfSeed(me.seed))),
    });
    expect(x25519DidKey(x25519OfDidKey(me.did))).toBe((world.registered[0].body as { encryptionKey: string }).encryptionKey);
  });

  it("checks that key.private's private keys match the public keys beside them", () => {
    const did = "did:plc:eveeeeeeeeeeeeeeeeeeeeeee";
    const k = newKeys();
    const parsed = parsePrivate(did, privateAnswer(did, k));
    expect(parsed.signingSeed).toEqual(k.signingSeed);
    expect(parsed.signingPublic).toEqual(ed25519.getPublicKey(k.signingSeed));
    expect(parsed.encryptionSecrets).toEqual([k.encryptionSecret]);
    const swapped = { ...privateAnswer(did, k), encryptionPrivateKey: privateAnswer(did, newKeys()).encryptionPrivateKey };
    expect(() => parsePrivate(did, swapped)).toThrow(/does not match/);
    expect(() => parsePrivate("did:plc:other", privateAnswer(did, k))).toThrow(/another DID/);
  });
});

describe("mentions", () => {
  it("skips only a recipient with no key to seal for", async () => {
    const me = await generateIdentity();
    const bob = await generateIdentity();
    world.keyserverDown = true;
    const sent: Uint8Array[] = [];
    const router = { send: (frame: Uint8Array) => sent.push(frame) } as unknown as RouterConnection;
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    await notifyMentions(router, me, ["did:plc:nokeysnnnnnnnnnnnnnnnnnn", bob.did], {
      channel: "automerge:c",
      msgId: "m",
      ping: false,
      text: "@all hi",
    });
    expect(sent).toHaveLength(1);
    expect(decodeFrame(sent[0]).header).toContain(bob.did);
    expect(warn).toHaveBeenCalledTimes(1);
    warn.mockRestore();
  });
});
