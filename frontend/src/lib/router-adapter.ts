// An automerge-repo NetworkAdapter over the Hearth router.
//
// Every other connection that listens to one of our router documents (a space,
// a DM) becomes a link. Per link we try a WebRTC data channel, negotiated with
// the router's `signal` verb; until it opens (or when it cannot) the link uses
// the router's relayed `send`. Each side introduces its automerge-repo peerId
// with a `hello` over the link, and only then is the peer announced to the
// repo. Messages are CBOR; large ones are cut into fragments that the other
// side reassembles per path (both paths are ordered).

import {
  cbor,
  NetworkAdapter,
  type Message,
  type PeerId,
  type PeerMetadata,
} from "@automerge/automerge-repo/slim";
import {
  decodeJsonBody,
  iceServersFrame,
  sendFrame,
  signalFrame,
  type RouterMessage,
} from "./frame";
import type { RouterTransport } from "./router-connection";

export type PeerPath = "connecting" | "direct" | "relay";

export interface PeerInfo {
  did: string;
  connId: string;
  path: PeerPath;
  peerId: PeerId | null;
  docs: string[];
  bytesDirect: number;
  bytesRelay: number;
}

export type RtcFactory = (config: RTCConfiguration) => RTCPeerConnection;

export interface RouterAdapterOptions {
  transport: RouterTransport;
  /** Creates peer connections; null disables WebRTC (relay only). */
  rtc?: RtcFactory | null;
  /** How long a link waits for its data channel before it uses the relay. */
  directTimeoutMs?: number;
  /** How long to wait for the router's ICE servers before trying without. */
  iceServersTimeoutMs?: number;
}

/** Largest piece written to a data channel or a relayed frame. */
export const FRAGMENT_SIZE = 16 * 1024;
const WHOLE = 0;
const MORE = 1;
const LAST = 2;

/** Splits an encoded payload into tagged pieces no larger than FRAGMENT_SIZE + 1. */
export function fragment(payload: Uint8Array, size = FRAGMENT_SIZE): Uint8Array[] {
  if (payload.length <= size) return [tagged(WHOLE, payload)];
  const out: Uint8Array[] = [];
  for (let i = 0; i < payload.length; i += size) {
    const end = Math.min(i + size, payload.length);
    out.push(tagged(end === payload.length ? LAST : MORE, payload.subarray(i, end)));
  }
  return out;
}

function tagged(tag: number, bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length + 1);
  out[0] = tag;
  out.set(bytes, 1);
  return out;
}

/** Reassembles what `fragment` produced, piece by piece, in order. */
export class Reassembler {
  private parts: Uint8Array[] = [];

  /** Returns the complete payload when `piece` finishes one, else null. */
  push(piece: Uint8Array): Uint8Array | null {
    const tag = piece[0];
    const bytes = piece.subarray(1);
    if (tag === WHOLE) {
      this.parts = [];
      return bytes;
    }
    this.parts.push(bytes);
    if (tag !== LAST) return null;
    const total = this.parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    this.parts = [];
    return out;
  }
}

/** Adapter-level messages, told apart from repo messages by the `hearth` key. */
type Control =
  | { hearth: "hello"; peerId: PeerId; peerMetadata: PeerMetadata }
  | { hearth: "app"; payload: unknown };

interface Link {
  key: string;
  did: string;
  connId: string;
  docs: Set<string>;
  path: PeerPath;
  peerId: PeerId | null;
  helloSent: boolean;
  pc: RTCPeerConnection | null;
  channel: RTCDataChannel | null;
  pendingCandidates: RTCIceCandidateInit[];
  queue: Uint8Array[];
  timer: ReturnType<typeof setTimeout> | null;
  rx: { direct: Reassembler; relay: Reassembler };
  bytesDirect: number;
  bytesRelay: number;
}

const linkKey = (did: string, connId: string) => `${did} ${connId}`;

/** Which side of a pair sends the WebRTC offer: the smaller (did, connId). */
export function isOfferer(self: { did: string; connId: string }, other: { did: string; connId: string }) {
  return linkKey(self.did, self.connId) < linkKey(other.did, other.connId);
}

export class RouterNetworkAdapter extends NetworkAdapter {
  /** Who listens to which router document right now (for presence): docId -> DIDs. */
  readonly presence = new Map<string, Map<string, string>>();
  private links = new Map<string, Link>();
  private ready = false;
  private readyResolvers: (() => void)[] = [];
  private signalSupported: boolean | null = null;
  private iceServers: RTCIceServer[] | null = null;
  private iceWaiters: (() => void)[] = [];
  private changeListeners = new Set<() => void>();
  private appListeners = new Set<(fromDid: string, payload: unknown) => void>();
  private unsubscribe: (() => void)[] = [];
  private readonly transport: RouterTransport;
  private readonly rtc: RtcFactory | null;
  private readonly directTimeoutMs: number;
  private readonly iceServersTimeoutMs: number;

  constructor(opts: RouterAdapterOptions) {
    super();
    this.transport = opts.transport;
    this.rtc =
      opts.rtc === undefined
        ? typeof RTCPeerConnection === "undefined"
          ? null
          : (c) => new RTCPeerConnection(c)
        : opts.rtc;
    this.directTimeoutMs = opts.directTimeoutMs ?? 8000;
    this.iceServersTimeoutMs = opts.iceServersTimeoutMs ?? 1500;
  }

  // --- NetworkAdapter -------------------------------------------------------

  isReady(): boolean {
    return this.ready;
  }

  whenReady(): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve) => this.readyResolvers.push(resolve));
  }

  connect(peerId: PeerId, peerMetadata?: PeerMetadata): void {
    this.peerId = peerId;
    this.peerMetadata = peerMetadata ?? {};
    this.unsubscribe.push(
      this.transport.on("message", (m) => this.onRouterMessage(m)),
      this.transport.on("open", () => this.markReady()),
      this.transport.on("close", () => this.onTransportClosed()),
    );
    if (this.transport.isOpen()) this.markReady();
    // Like the WebSocket adapter: never keep the repo waiting on a router that is away.
    setTimeout(() => this.markReady(), 1000);
  }

  send(message: Message): void {
    const link = this.linkByPeer(message.targetId);
    if (!link) return;
    this.transmit(link, cbor.encode(message));
  }

  disconnect(): void {
    for (const link of [...this.links.values()]) this.dropLink(link);
    for (const off of this.unsubscribe) off();
    this.unsubscribe = [];
    this.emit("close");
  }

  // --- what the app uses ----------------------------------------------------

  /** Every link with its path and traffic, for the connection indicator. */
  peers(): PeerInfo[] {
    return [...this.links.values()].map((l) => ({
      did: l.did,
      connId: l.connId,
      path: l.path,
      peerId: l.peerId,
      docs: [...l.docs],
      bytesDirect: l.bytesDirect,
      bytesRelay: l.bytesRelay,
    }));
  }

  /** DIDs connected on router document `docId` (other than our own connection). */
  onlineDids(docId: string): Set<string> {
    return new Set(this.presence.get(docId)?.values() ?? []);
  }

  onChange(fn: () => void): () => void {
    this.changeListeners.add(fn);
    return () => this.changeListeners.delete(fn);
  }

  onApp(fn: (fromDid: string, payload: unknown) => void): () => void {
    this.appListeners.add(fn);
    return () => this.appListeners.delete(fn);
  }

  /** Sends an app-level message to every connection of `did` we have a link with. */
  sendApp(did: string, payload: unknown): number {
    let n = 0;
    for (const link of this.links.values()) {
      if (link.did !== did || !link.peerId) continue;
      this.transmitControl(link, { hearth: "app", payload });
      n++;
    }
    return n;
  }

  // --- router events --------------------------------------------------------

  private onRouterMessage(m: RouterMessage): void {
    switch (m.verb) {
      case "welcome":
        this.markReady();
        if (this.rtc && this.signalSupported !== false) this.transport.send(iceServersFrame());
        return;
      case "join":
        this.onJoin(m.did, m.connId, m.docId);
        return;
      case "leave":
        this.onLeave(m.did, m.connId, m.docId);
        return;
      case "send": {
        const link = this.linkFor(m.did, m.connId, m.docId);
        // The other side gave up on a direct channel: do the same.
        if (link.path === "connecting") this.useRelay(link);
        this.receive(link, "relay", m.body);
        return;
      }
      case "signal":
        void this.onSignal(m.did, m.connId, m.docId, m.body);
        return;
      case "ice-servers":
        this.setIceServers(m.iceServers);
        return;
      case "error":
        if (m.about === "signal") this.signalUnsupported();
        if (m.about === "ice-servers") this.setIceServers([]);
        if (m.about) console.warn(`router refused ${m.about}: ${m.code} ${m.message}`);
        return;
      default:
        return;
    }
  }

  private onJoin(did: string, connId: string, docId: string): void {
    const self = this.transport.self;
    if (self && self.did === did && self.connId === connId) return;
    let members = this.presence.get(docId);
    if (!members) this.presence.set(docId, (members = new Map()));
    members.set(linkKey(did, connId), did);
    this.linkFor(did, connId, docId);
    this.changed();
  }

  private onLeave(did: string, connId: string, docId: string): void {
    const key = linkKey(did, connId);
    const members = this.presence.get(docId);
    members?.delete(key);
    if (members && members.size === 0) this.presence.delete(docId);
    const link = this.links.get(key);
    if (link) {
      link.docs.delete(docId);
      if (link.docs.size === 0) this.dropLink(link);
    }
    this.changed();
  }

  private onTransportClosed(): void {
    // Without the router we cannot tell who is still there; start over on reconnect.
    for (const link of [...this.links.values()]) this.dropLink(link);
    this.presence.clear();
    this.changed();
  }

  private signalUnsupported(): void {
    this.signalSupported = false;
    this.setIceServers([]);
    for (const link of this.links.values()) {
      if (link.path === "connecting") this.useRelay(link);
    }
  }

  private setIceServers(servers: RTCIceServer[]): void {
    this.iceServers = servers;
    for (const wake of this.iceWaiters.splice(0)) wake();
  }

  private async iceConfig(): Promise<RTCConfiguration> {
    if (this.iceServers === null) {
      await new Promise<void>((resolve) => {
        this.iceWaiters.push(resolve);
        setTimeout(resolve, this.iceServersTimeoutMs);
      });
    }
    return { iceServers: this.iceServers ?? [] };
  }

  // --- links ----------------------------------------------------------------

  private linkFor(did: string, connId: string, docId: string): Link {
    const key = linkKey(did, connId);
    let link = this.links.get(key);
    if (link) {
      link.docs.add(docId);
      return link;
    }
    link = {
      key,
      did,
      connId,
      docs: new Set([docId]),
      path: "connecting",
      peerId: null,
      helloSent: false,
      pc: null,
      channel: null,
      pendingCandidates: [],
      queue: [],
      timer: null,
      rx: { direct: new Reassembler(), relay: new Reassembler() },
      bytesDirect: 0,
      bytesRelay: 0,
    };
    this.links.set(key, link);
    if (!this.rtc || this.signalSupported === false) {
      this.useRelay(link);
    } else {
      const l = link;
      l.timer = setTimeout(() => this.useRelay(l), this.directTimeoutMs);
      const self = this.transport.self ?? { did: "", connId: "" };
      if (isOfferer(self, link)) void this.offer(link);
    }
    this.changed();
    return link;
  }

  private dropLink(link: Link): void {
    if (this.links.get(link.key) !== link) return;
    this.links.delete(link.key);
    if (link.timer) clearTimeout(link.timer);
    link.channel?.close();
    link.pc?.close();
    if (link.peerId && !this.linkByPeer(link.peerId)) {
      this.emit("peer-disconnected", { peerId: link.peerId });
    }
    this.changed();
  }

  private useRelay(link: Link): void {
    if (link.timer) clearTimeout(link.timer);
    link.timer = null;
    if (link.path === "direct") return;
    link.path = "relay";
    this.pathReady(link);
  }

  private useDirect(link: Link, channel: RTCDataChannel): void {
    if (this.links.get(link.key) !== link) return;
    if (link.timer) clearTimeout(link.timer);
    link.timer = null;
    link.channel = channel;
    link.path = "direct";
    this.pathReady(link);
  }

  /** A path is usable: introduce ourselves once and send what waited. */
  private pathReady(link: Link): void {
    if (!link.helloSent) this.sendHello(link);
    for (const piece of link.queue.splice(0)) this.write(link, piece);
    this.changed();
  }

  private sendHello(link: Link): void {
    link.helloSent = true;
    this.transmitControl(link, {
      hearth: "hello",
      peerId: this.peerId as PeerId,
      peerMetadata: this.peerMetadata ?? {},
    });
  }

  private linkByPeer(peerId: PeerId): Link | undefined {
    for (const link of this.links.values()) if (link.peerId === peerId) return link;
    return undefined;
  }

  // --- bytes ----------------------------------------------------------------

  private transmitControl(link: Link, control: Control): void {
    this.transmit(link, cbor.encode(control));
  }

  private transmit(link: Link, payload: Uint8Array): void {
    for (const piece of fragment(payload)) {
      if (link.path === "connecting") link.queue.push(piece);
      else this.write(link, piece);
    }
  }

  private write(link: Link, piece: Uint8Array): void {
    if (link.path === "direct" && link.channel?.readyState === "open") {
      link.channel.send(piece as Uint8Array<ArrayBuffer>);
      link.bytesDirect += piece.length;
      return;
    }
    const docId = link.docs.values().next().value;
    if (docId === undefined) return;
    if (this.transport.send(sendFrame(link.did, link.connId, docId, piece))) {
      link.bytesRelay += piece.length;
    }
  }

  private receive(link: Link, path: "direct" | "relay", piece: Uint8Array): void {
    const payload = link.rx[path].push(piece);
    if (!payload) return;
    let decoded: unknown;
    try {
      decoded = cbor.decode(payload);
    } catch {
      console.warn("router adapter: undecodable message from", link.did);
      return;
    }
    if (decoded && typeof decoded === "object" && "hearth" in decoded) {
      this.onControl(link, path, decoded as Control);
    } else if (link.peerId) {
      this.emit("message", decoded as Message);
    }
  }

  private onControl(link: Link, path: "direct" | "relay", control: Control): void {
    if (control.hearth === "app") {
      for (const fn of this.appListeners) fn(link.did, control.payload);
      return;
    }
    if (control.hearth !== "hello" || typeof control.peerId !== "string") return;
    if (link.peerId === control.peerId) return;
    if (link.peerId) this.emit("peer-disconnected", { peerId: link.peerId });
    // The same repo on a new connection replaces its old link.
    const previous = this.linkByPeer(control.peerId);
    if (previous && previous !== link) {
      previous.peerId = null;
      this.dropLink(previous);
    }
    link.peerId = control.peerId;
    if (!link.helloSent) {
      if (link.path === "connecting" && path === "relay") this.useRelay(link);
      else this.sendHello(link);
    }
    this.emit("peer-candidate", { peerId: control.peerId, peerMetadata: control.peerMetadata ?? {} });
    this.changed();
  }

  // --- WebRTC ---------------------------------------------------------------

  private async createPc(link: Link): Promise<RTCPeerConnection> {
    const pc = this.rtc!(await this.iceConfig());
    link.pc = pc;
    pc.onicecandidate = (ev) => {
      if (ev.candidate) this.signal(link, { candidate: ev.candidate.toJSON() });
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed" && link.pc === pc) {
        link.channel = null;
        if (link.path === "direct") link.path = "relay";
        this.useRelay(link);
      }
    };
    pc.ondatachannel = (ev) => this.wireChannel(link, ev.channel);
    return pc;
  }

  private wireChannel(link: Link, channel: RTCDataChannel): void {
    channel.binaryType = "arraybuffer";
    channel.onopen = () => this.useDirect(link, channel);
    channel.onmessage = (ev) => this.receive(link, "direct", new Uint8Array(ev.data as ArrayBuffer));
    channel.onclose = () => {
      if (link.channel !== channel) return;
      link.channel = null;
      if (this.links.get(link.key) === link) {
        link.path = "relay";
        this.changed();
      }
    };
    if (channel.readyState === "open") this.useDirect(link, channel);
  }

  private async offer(link: Link): Promise<void> {
    try {
      const pc = await this.createPc(link);
      if (this.links.get(link.key) !== link) return pc.close();
      this.wireChannel(link, pc.createDataChannel("hearth", { ordered: true }));
      await pc.setLocalDescription(await pc.createOffer());
      this.signal(link, { description: pc.localDescription!.toJSON() });
    } catch (e) {
      console.warn("router adapter: offer failed", e);
      this.useRelay(link);
    }
  }

  private signal(link: Link, payload: unknown): void {
    const docId = link.docs.values().next().value;
    if (docId === undefined || this.signalSupported === false) return;
    this.transport.send(signalFrame(link.did, link.connId, docId, payload));
  }

  private async onSignal(did: string, connId: string, docId: string, body: Uint8Array) {
    this.signalSupported = true;
    if (!this.rtc) return;
    const link = this.linkFor(did, connId, docId);
    let msg: { description?: RTCSessionDescriptionInit; candidate?: RTCIceCandidateInit };
    try {
      msg = decodeJsonBody(body) as typeof msg;
    } catch {
      return;
    }
    try {
      if (msg.description) {
        let pc = link.pc;
        if (msg.description.type === "offer" && !pc) pc = await this.createPc(link);
        if (!pc) return;
        await pc.setRemoteDescription(msg.description);
        for (const c of link.pendingCandidates.splice(0)) await pc.addIceCandidate(c);
        if (msg.description.type === "offer") {
          await pc.setLocalDescription(await pc.createAnswer());
          this.signal(link, { description: pc.localDescription!.toJSON() });
        }
      } else if (msg.candidate) {
        if (link.pc?.remoteDescription) await link.pc.addIceCandidate(msg.candidate);
        else link.pendingCandidates.push(msg.candidate);
      }
    } catch (e) {
      console.warn("router adapter: signalling failed", e);
    }
  }

  // --- readiness and change notification -------------------------------------

  private markReady(): void {
    if (this.ready) return;
    this.ready = true;
    for (const resolve of this.readyResolvers.splice(0)) resolve();
  }

  private changed(): void {
    for (const fn of this.changeListeners) fn();
  }
}
