import { cbor, type Message, type PeerId } from "@automerge/automerge-repo/slim";
import { afterEach, describe, expect, it, vi } from "vitest";
import { decodeFrame, encodeFrame, parseRouterFrame, type RouterMessage } from "../src/lib/frame";
import {
  FRAGMENT_SIZE,
  fragment,
  isOfferer,
  Reassembler,
  RouterNetworkAdapter,
  type RtcFactory,
} from "../src/lib/router-adapter";
import type { RouterTransport } from "../src/lib/router-connection";

// --- fakes -------------------------------------------------------------------

type Listener = (...a: never[]) => void;

/** A router connection that records what the adapter sends. */
class FakeTransport implements RouterTransport {
  sent: Uint8Array[] = [];
  open = true;
  private listeners = new Map<string, Set<Listener>>();
  /** When set, frames are handed to this (a fake router) instead of only recorded. */
  deliver: ((frame: Uint8Array) => void) | null = null;

  constructor(public self: { did: string; connId: string } | null) {}

  isOpen() {
    return this.open;
  }
  send(frame: Uint8Array) {
    this.sent.push(frame);
    this.deliver?.(frame);
    return this.open;
  }
  on(event: string, fn: Listener) {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }
  emit(event: string, ...args: unknown[]) {
    for (const fn of this.listeners.get(event) ?? []) (fn as (...a: unknown[]) => void)(...args);
  }
  router(header: unknown[], body?: Uint8Array) {
    this.emit("message", parseRouterFrame(encodeFrame(header, body)));
  }
  headers(verb?: string) {
    return this.sent.map((f) => decodeFrame(f)).filter((f) => !verb || f.header[0] === verb);
  }
}

/** Fake RTCPeerConnections that connect their data channels through offer/answer. */
class FakeChannel {
  readyState: RTCDataChannelState = "connecting";
  binaryType = "arraybuffer";
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: ArrayBuffer }) => void) | null = null;
  onclose: (() => void) | null = null;
  peer: FakeChannel | null = null;
  sent = 0;
  send(data: Uint8Array) {
    this.sent++;
    const copy = data.slice().buffer;
    queueMicrotask(() => this.peer?.onmessage?.({ data: copy }));
  }
  close() {
    if (this.readyState === "closed") return;
    this.readyState = "closed";
    this.onclose?.();
    this.peer?.close();
  }
  openNow() {
    this.readyState = "open";
    this.onopen?.();
  }
}

const pcs = new Map<string, FakePc>();
let pcCounter = 0;

class FakePc {
  id = `pc${++pcCounter}`;
  channel: FakeChannel | null = null;
  remoteDescription: RTCSessionDescriptionInit | null = null;
  localDescription: { toJSON(): RTCSessionDescriptionInit } | null = null;
  connectionState = "new";
  onicecandidate: ((ev: { candidate: null }) => void) | null = null;
  onconnectionstatechange: (() => void) | null = null;
  ondatachannel: ((ev: { channel: FakeChannel }) => void) | null = null;
  candidates: RTCIceCandidateInit[] = [];
  constructor(public config: RTCConfiguration) {
    pcs.set(this.id, this);
  }
  createDataChannel() {
    return (this.channel = new FakeChannel());
  }
  async createOffer() {
    return { type: "offer" as const, sdp: this.id };
  }
  async createAnswer() {
    return { type: "answer" as const, sdp: this.id };
  }
  async setLocalDescription(d: RTCSessionDescriptionInit) {
    this.localDescription = { toJSON: () => d };
  }
  async setRemoteDescription(d: RTCSessionDescriptionInit) {
    this.remoteDescription = d;
    if (d.type === "answer") {
      // The offerer learns the answer: join the two channels and open them.
      const other = pcs.get(d.sdp!)!;
      const theirs = new FakeChannel();
      this.channel!.peer = theirs;
      theirs.peer = this.channel;
      other.ondatachannel?.({ channel: theirs });
      this.channel!.openNow();
      theirs.openNow();
    }
  }
  async addIceCandidate(c: RTCIceCandidateInit) {
    this.candidates.push(c);
  }
  close() {
    this.channel?.close();
  }
}

const fakeRtc: RtcFactory = (config) => new FakePc(config) as unknown as RTCPeerConnection;

const A = { did: "did:key:zAlice", connId: "01A" };
const B = { did: "did:key:zBob", connId: "01B" };

function adapter(self: { did: string; connId: string }, opts: { rtc?: RtcFactory | null; timeout?: number } = {}) {
  const transport = new FakeTransport(self);
  const net = new RouterNetworkAdapter({
    transport,
    rtc: opts.rtc ?? null,
    directTimeoutMs: opts.timeout ?? 5000,
    iceServersTimeoutMs: 10,
  });
  const events: { type: string; payload: unknown }[] = [];
  net.on("peer-candidate", (p) => events.push({ type: "peer-candidate", payload: p }));
  net.on("peer-disconnected", (p) => events.push({ type: "peer-disconnected", payload: p }));
  net.on("message", (p) => events.push({ type: "message", payload: p }));
  net.connect((self === A ? "peer-A" : self === B ? "peer-B" : "peer-X") as PeerId, { isEphemeral: false });
  return { net, transport, events };
}

/** Decodes a relayed piece back into what the adapter encoded. */
function relayed(frame: { body: Uint8Array }): Record<string, unknown> {
  const payload = new Reassembler().push(frame.body)!;
  return cbor.decode(payload) as Record<string, unknown>;
}

const hello = (peerId: string) =>
  fragment(cbor.encode({ hearth: "hello", peerId, peerMetadata: { isEphemeral: false } }))[0];

const flush = () => new Promise((r) => setTimeout(r, 0));

afterEach(() => {
  vi.useRealTimers();
});

// --- tests --------------------------------------------------------------------

describe("fragments", () => {
  it("passes small payloads whole and splits large ones, reassembled in order", () => {
    const small = new Uint8Array([1, 2, 3]);
    expect(fragment(small)).toHaveLength(1);
    expect(new Reassembler().push(fragment(small)[0])).toEqual(small);

    const big = Uint8Array.from({ length: FRAGMENT_SIZE * 2 + 5 }, (_, i) => i % 251);
    const pieces = fragment(big);
    expect(pieces).toHaveLength(3);
    expect(Math.max(...pieces.map((p) => p.length))).toBe(FRAGMENT_SIZE + 1);
    const r = new Reassembler();
    expect(r.push(pieces[0])).toBeNull();
    expect(r.push(pieces[1])).toBeNull();
    expect(r.push(pieces[2])).toEqual(big);
  });
});

describe("offer rule", () => {
  it("picks exactly one offerer for a pair, also for two connections of one DID", () => {
    expect(isOfferer(A, B)).not.toBe(isOfferer(B, A));
    const a2 = { did: A.did, connId: "01Z" };
    expect(isOfferer(A, a2)).not.toBe(isOfferer(a2, A));
  });
});

describe("relay path (no WebRTC)", () => {
  it("introduces itself over relayed send, then carries repo messages both ways", async () => {
    const { net, transport, events } = adapter(A);
    transport.router(["welcome", A.did, A.connId, {}]);
    transport.router(["join", B.did, B.connId, "space1"]);

    const sends = transport.headers("send");
    expect(sends).toHaveLength(1);
    expect(sends[0].header).toEqual(["send", B.did, B.connId, "space1"]);
    expect(relayed(sends[0])).toMatchObject({ hearth: "hello", peerId: "peer-A" });
    expect(net.peers()[0]).toMatchObject({ did: B.did, path: "relay", peerId: null });

    // Until Bob's repo introduces itself, nothing reaches our repo.
    transport.router(["send", B.did, B.connId, "space1"], hello("peer-Bob"));
    expect(events).toEqual([
      { type: "peer-candidate", payload: { peerId: "peer-Bob", peerMetadata: { isEphemeral: false } } },
    ]);

    const msg = { type: "sync", senderId: "peer-A", targetId: "peer-Bob", documentId: "d1", data: new Uint8Array([5, 6]) };
    net.send(msg as unknown as Message);
    const out = transport.headers("send").at(-1)!;
    expect(out.header).toEqual(["send", B.did, B.connId, "space1"]);
    expect(relayed(out)).toMatchObject({ type: "sync", targetId: "peer-Bob", documentId: "d1" });

    const incoming = { type: "sync", senderId: "peer-Bob", targetId: "peer-A", documentId: "d1", data: new Uint8Array([7]) };
    transport.router(["send", B.did, B.connId, "space1"], fragment(cbor.encode(incoming))[0]);
    expect(events.at(-1)).toMatchObject({ type: "message", payload: { senderId: "peer-Bob", documentId: "d1" } });
    expect(net.peers()[0].bytesRelay).toBeGreaterThan(0);
    expect(net.peers()[0].bytesDirect).toBe(0);
  });

  it("reports presence per document and disconnects a peer when its last document is left", () => {
    const { net, transport, events } = adapter(A);
    transport.router(["welcome", A.did, A.connId, {}]);
    transport.router(["join", B.did, B.connId, "space1"]);
    transport.router(["join", B.did, B.connId, "dm1"]);
    transport.router(["send", B.did, B.connId, "space1"], hello("peer-Bob"));
    expect(net.onlineDids("space1")).toEqual(new Set([B.did]));
    expect(net.onlineDids("dm1")).toEqual(new Set([B.did]));

    transport.router(["leave", B.did, B.connId, "space1"]);
    expect(net.onlineDids("space1").size).toBe(0);
    expect(events.filter((e) => e.type === "peer-disconnected")).toHaveLength(0);

    transport.router(["leave", B.did, B.connId, "dm1"]);
    expect(events.at(-1)).toEqual({ type: "peer-disconnected", payload: { peerId: "peer-Bob" } });
    expect(net.peers()).toEqual([]);
  });

  it("ignores a join about its own connection and drops everything when the router goes away", () => {
    const { net, transport, events } = adapter(A);
    transport.router(["welcome", A.did, A.connId, {}]);
    transport.router(["join", A.did, A.connId, "space1"]);
    expect(net.peers()).toEqual([]);
    transport.router(["join", B.did, B.connId, "space1"]);
    transport.router(["send", B.did, B.connId, "space1"], hello("peer-Bob"));
    transport.emit("close");
    expect(net.peers()).toEqual([]);
    expect(net.onlineDids("space1").size).toBe(0);
    expect(events.at(-1)).toEqual({ type: "peer-disconnected", payload: { peerId: "peer-Bob" } });
  });

  it("delivers app messages to every connection of a DID", () => {
    const { net, transport } = adapter(A);
    transport.router(["welcome", A.did, A.connId, {}]);
    transport.router(["join", B.did, B.connId, "s"]);
    transport.router(["join", B.did, "01C", "s"]);
    transport.router(["send", B.did, B.connId, "s"], hello("peer-Bob1"));
    transport.router(["send", B.did, "01C", "s"], hello("peer-Bob2"));
    const before = transport.headers("send").length;
    expect(net.sendApp(B.did, { kind: "dm", url: "automerge:x" })).toBe(2);
    const sent = transport.headers("send").slice(before);
    expect(sent.map((f) => f.header[2]).sort()).toEqual(["01B", "01C"]);
    expect(relayed(sent[0])).toEqual({ hearth: "app", payload: { kind: "dm", url: "automerge:x" } });

    const got: unknown[] = [];
    net.onApp((from, payload) => got.push([from, payload]));
    transport.router(["send", B.did, B.connId, "s"], fragment(cbor.encode({ hearth: "app", payload: 42 }))[0]);
    expect(got).toEqual([[B.did, 42]]);
  });
});

describe("falling back from WebRTC to the relay", () => {
  it("uses relayed send when the router does not know `signal`, and sends what waited", async () => {
    const { net, transport } = adapter(A, { rtc: fakeRtc });
    transport.router(["welcome", A.did, A.connId, {}]);
    expect(transport.headers("ice-servers")).toHaveLength(1);
    transport.router(["error", "unknown_verb", "unknown verb 'ice-servers'", "ice-servers"]);
    transport.router(["join", B.did, B.connId, "space1"]);
    await flush();
    // Alice (smaller DID) offers.
    expect(transport.headers("signal")).toHaveLength(1);
    expect(net.peers()[0].path).toBe("connecting");
    expect(transport.headers("send")).toHaveLength(0);

    transport.router(["error", "unknown_verb", "unknown verb 'signal'", "signal"]);
    expect(net.peers()[0].path).toBe("relay");
    expect(relayed(transport.headers("send")[0])).toMatchObject({ hearth: "hello" });

    // Later links go straight to the relay.
    transport.router(["join", "did:key:zCarol", "01C", "space1"]);
    await flush();
    expect(transport.headers("signal")).toHaveLength(1);
    expect(net.peers().find((p) => p.did === "did:key:zCarol")?.path).toBe("relay");
  });

  it("uses the relay when no data channel opens in time", async () => {
    vi.useFakeTimers();
    const { net, transport } = adapter(A, { rtc: fakeRtc, timeout: 3000 });
    transport.router(["welcome", A.did, A.connId, {}]);
    transport.router(["ice-servers", 60], new TextEncoder().encode('{"iceServers":[]}'));
    transport.router(["join", B.did, B.connId, "space1"]);
    await vi.advanceTimersByTimeAsync(2999);
    expect(net.peers()[0].path).toBe("connecting");
    expect(transport.headers("send")).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(net.peers()[0].path).toBe("relay");
    expect(relayed(transport.headers("send")[0])).toMatchObject({ hearth: "hello" });
  });

  it("follows the other side to the relay when it already sends there", async () => {
    const { net, transport } = adapter(B, { rtc: fakeRtc });
    transport.router(["welcome", B.did, B.connId, {}]);
    transport.router(["join", A.did, A.connId, "space1"]);
    expect(net.peers()[0].path).toBe("connecting");
    transport.router(["send", A.did, A.connId, "space1"], hello("peer-Alice"));
    expect(net.peers()[0].path).toBe("relay");
    expect(relayed(transport.headers("send")[0])).toMatchObject({ hearth: "hello" });
  });
});

describe("direct path over a data channel", () => {
  /** Two adapters behind a fake router that forwards `signal` and `send` between them. */
  function pair() {
    pcs.clear();
    const a = adapter(A, { rtc: fakeRtc });
    const b = adapter(B, { rtc: fakeRtc });
    const route = (from: { did: string; connId: string }, to: FakeTransport) => (frame: Uint8Array) => {
      const { header, body } = decodeFrame(frame);
      if (header[0] === "signal" || header[0] === "send") {
        const msg: RouterMessage = parseRouterFrame(encodeFrame([header[0], from.did, from.connId, header[3]], body));
        queueMicrotask(() => to.emit("message", msg));
      } else if (header[0] === "ice-servers") {
        queueMicrotask(() => (from === A ? a : b).transport.router(["ice-servers", 60], new TextEncoder().encode('{"iceServers":[]}')));
      }
    };
    a.transport.deliver = route(A, b.transport);
    b.transport.deliver = route(B, a.transport);
    for (const side of [a, b]) side.transport.router(["welcome", side.transport.self!.did, side.transport.self!.connId, {}]);
    a.transport.router(["join", B.did, B.connId, "space1"]);
    b.transport.router(["join", A.did, A.connId, "space1"]);
    return { a, b };
  }

  it("signals, opens a channel, and carries everything over it with no relayed bytes", async () => {
    const { a, b } = pair();
    await vi.waitFor(() => {
      expect(a.net.peers()[0]?.path).toBe("direct");
      expect(b.net.peers()[0]?.path).toBe("direct");
      expect(a.events.some((e) => e.type === "peer-candidate")).toBe(true);
      expect(b.events.some((e) => e.type === "peer-candidate")).toBe(true);
    });
    expect(a.transport.headers("signal").length).toBeGreaterThan(0);
    expect(b.transport.headers("signal").length).toBeGreaterThan(0);

    const big = new Uint8Array(FRAGMENT_SIZE * 3).fill(3);
    a.net.send({ type: "sync", senderId: "peer-A", targetId: "peer-B", documentId: "d", data: big } as unknown as Message);
    await vi.waitFor(() => expect(b.events.some((e) => e.type === "message")).toBe(true));
    const got = b.events.find((e) => e.type === "message")!.payload as { data: Uint8Array };
    expect(got.data).toEqual(big);

    for (const side of [a, b]) {
      expect(side.transport.headers("send")).toHaveLength(0);
      expect(side.net.peers()[0].bytesRelay).toBe(0);
    }
    expect(a.net.peers()[0].bytesDirect).toBeGreaterThan(big.length);
  });

  it("moves to the relay when the channel closes while the peer is still there", async () => {
    const { a, b } = pair();
    await vi.waitFor(() => expect(b.events.some((e) => e.type === "peer-candidate")).toBe(true));
    const pc = [...pcs.values()].find((p) => p.channel && p.channel.readyState === "open")!;
    pc.channel!.close();
    await vi.waitFor(() => expect(a.net.peers()[0].path).toBe("relay"));
    a.net.send({ type: "sync", senderId: "peer-A", targetId: "peer-B", documentId: "d", data: new Uint8Array([1]) } as unknown as Message);
    await vi.waitFor(() => expect(b.events.some((e) => e.type === "message")).toBe(true));
    expect(a.transport.headers("send").length).toBeGreaterThan(0);
  });
});
