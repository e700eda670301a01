// The service worker's push handler, run on the exact bytes the router pushes
// (router/notify.py): a sealed mail as its own payload when it fits, else a
// `{"hearth":"mail",...}` hint, and `{"hearth":"notify",...}` for a channel
// ping. The browser tests (test_pwa.py) deliver JSON pushes through DevTools,
// whose `data` is a string: binary sealed bytes cannot travel that way.
import workerSource from "../src/service-worker.js?raw";
import { describe, expect, it } from "vitest";
import { decodeFrame } from "../src/lib/frame";
import { generateIdentity } from "../src/lib/identity";
import { notifyMentions } from "../src/lib/notifications";

type Shown = { title: string; body: string; tag: string; url: string };

/** Loads service-worker.js into a stand-in worker scope; returns what it would show for a push. */
function worker() {
  const source = workerSource
    .replace("__HEARTH_VERSION__", "test")
    .replace("__HEARTH_PRECACHE__", "[]");
  const listeners = new Map<string, (ev: unknown) => void>();
  const shown: Shown[] = [];
  const told: unknown[] = [];
  const self = {
    location: new URL("http://127.0.0.1/"),
    addEventListener: (type: string, fn: (ev: unknown) => void) => listeners.set(type, fn),
    registration: {
      showNotification: async (title: string, o: { body: string; tag: string; data: { url: string } }) => {
        shown.push({ title, body: o.body, tag: o.tag, url: o.data.url });
      },
    },
  };
  const clients = { matchAll: async () => [{ postMessage: (m: unknown) => told.push(m) }] };
  new Function("self", "caches", "clients", source)(self, {}, clients);
  return {
    shown,
    told,
    /** Fires a push with `bytes` as PushMessageData (text() decodes UTF-8 with replacement, as browsers do). */
    async push(bytes: Uint8Array | null) {
      const waits: Promise<unknown>[] = [];
      const data = bytes && {
        text: () => new TextDecoder().decode(bytes),
        arrayBuffer: () => bytes.slice().buffer,
        json: () => JSON.parse(new TextDecoder().decode(bytes)),
      };
      listeners.get("push")!({ data, waitUntil: (p: Promise<unknown>) => waits.push(p) });
      await Promise.all(waits);
      return shown[shown.length - 1];
    },
  };
}

const utf8 = (s: string) => new TextEncoder().encode(s);

describe("service worker push handler", () => {
  it("shows a sealed mail, the router's push payload, without reading it", async () => {
    const alice = await generateIdentity();
    const bob = await generateIdentity();
    const frames: Uint8Array[] = [];
    const router = { send: (f: Uint8Array) => frames.push(f) } as unknown as Parameters<typeof notifyMentions>[0];
    await notifyMentions(router, alice, [bob.did], {
      channel: "automerge:ch",
      msgId: "m1",
      ping: true,
      text: '{"title":"not what it seems"} @Bob',
    });
    const sealed = decodeFrame(frames[0]).body; // the mail body: what the router pushes as is
    expect(sealed.length).toBeLessThanOrEqual(3000);
    const sw = worker();
    expect(await sw.push(sealed)).toEqual({
      title: "Hearth",
      body: "Someone wrote to you",
      tag: "hearth-mail",
      url: "/",
    });
    expect(sw.told).toEqual([{ type: "hearth-push", title: "Hearth", body: "Someone wrote to you" }]);
  });

  it("a sealed mail whose first byte happens to be '{' is still a sealed mail", async () => {
    const sw = worker();
    const bytes = Uint8Array.from([0x7b, 0xff, 0x00, 0x13, 0x88, 0x7d]);
    expect((await sw.push(bytes)).body).toBe("Someone wrote to you");
  });

  it("shows the router's notify hint for a channel ping, one notification per channel", async () => {
    const sw = worker();
    // router/notify.py: json.dumps({"hearth": "notify", "doc", "from", "urgency"}, separators=(",", ":"))
    const hint = '{"hearth":"notify","doc":"3xQchannel","from":"did:key:z6MkAlice","urgency":"ping"}';
    expect(await sw.push(utf8(hint))).toEqual({
      title: "Hearth",
      body: "You were pinged in a channel",
      tag: "3xQchannel",
      url: "/",
    });
  });

  it("shows the mail-waiting hint per sender, and something for an empty push", async () => {
    const sw = worker();
    const hint = '{"hearth":"mail","from":"did:key:z6MkCarol","msgId":"m2"}';
    expect(await sw.push(utf8(hint))).toMatchObject({ body: "A message is waiting for you", tag: "did:key:z6MkCarol" });
    expect(await sw.push(null)).toMatchObject({ body: "Something new is waiting", tag: "hearth" });
  });
});
