// The WebSocket to the router: authenticates with a token per attempt, keeps
// the interest set across reconnects, parses frames into RouterMessages.

import { Emitter } from "./emitter";
import { deviceFrame, FrameError, listenFrame, parseRouterFrame, type RouterMessage } from "./frame";

/** What the router adapter needs from a router connection (tests pass a fake). */
export interface RouterTransport {
  /** Our own (did, connId) once the router welcomed us. */
  readonly self: { did: string; connId: string } | null;
  isOpen(): boolean;
  /** Sends one frame; returns false (and drops it) when not connected. */
  send(frame: Uint8Array): boolean;
  on(event: "message", fn: (msg: RouterMessage) => void): () => void;
  on(event: "open", fn: () => void): () => void;
  on(event: "close", fn: () => void): () => void;
}

type Events = {
  message: (msg: RouterMessage) => void;
  open: () => void;
  close: () => void;
  state: (state: RouterState) => void;
};

export type RouterState = "connecting" | "open" | "closed";

export interface RouterConnectionOptions {
  url: string; // http(s) base URL of the router
  did: string;
  /** A fresh single-use token for each attempt (self-signed did:key JWT or router token). */
  token: () => Promise<string>;
  /** Names this browser to the router's mailbox, so mail waits for it. */
  deviceId?: string;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export class RouterConnection extends Emitter<Events> implements RouterTransport {
  self: { did: string; connId: string } | null = null;
  state: RouterState = "closed";
  lastError = "";
  private ws: WebSocket | null = null;
  private interests: string[] = [];
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;

  constructor(private opts: RouterConnectionOptions) {
    super();
  }

  start(): void {
    this.stopped = false;
    void this.connect();
  }

  /** Closes the connection and stays away until `start()`. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000, "bye");
    this.self = null;
    const wasOpen = this.state === "open";
    this.setState("closed");
    if (wasOpen) this.emitEvent("close");
  }

  isOpen(): boolean {
    return this.state === "open";
  }

  /** Replaces the interest set; re-sent on every reconnect. */
  listen(docIds: readonly string[]): void {
    const next = [...new Set(docIds)].sort();
    if (next.join("\n") === this.interests.join("\n")) return;
    this.interests = next;
    if (this.isOpen()) this.send(listenFrame(this.interests));
  }

  send(frame: Uint8Array): boolean {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(frame as Uint8Array<ArrayBuffer>);
    return true;
  }

  /** Try again now (e.g. when the browser says it is back online). */
  retryNow(): void {
    if (this.state !== "closed" || this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    void this.connect();
  }

  private setState(state: RouterState): void {
    this.state = state;
    this.emitEvent("state", state);
  }

  private async connect(): Promise<void> {
    this.timer = null;
    if (this.stopped) return;
    this.setState("connecting");
    let token: string;
    try {
      token = await this.opts.token();
    } catch (e) {
      this.lastError = `token: ${e}`;
      this.scheduleReconnect();
      return;
    }
    if (this.stopped) return;
    const wsUrl = this.opts.url.replace(/^http/, "ws").replace(/\/+$/, "");
    let ws: WebSocket;
    try {
      // "hearth.v1": we understand the router's extension frames (welcome, error,
      // mail, signal, ...); without it the router speaks Roomy v0 only.
      ws = new WebSocket(`${wsUrl}/connect/as/${this.opts.did}`, ["authorization", token, "hearth.v1"]);
    } catch (e) {
      this.lastError = String(e);
      this.scheduleReconnect();
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.setState("open");
      if (this.opts.deviceId) this.send(deviceFrame(this.opts.deviceId));
      if (this.interests.length) this.send(listenFrame(this.interests));
      this.emitEvent("open");
    };
    ws.onmessage = (ev) => {
      const data =
        typeof ev.data === "string" ? new TextEncoder().encode(ev.data) : new Uint8Array(ev.data);
      let msg: RouterMessage;
      try {
        msg = parseRouterFrame(data);
      } catch (e) {
        if (e instanceof FrameError) return console.warn("router:", e.message);
        throw e;
      }
      if (msg.verb === "welcome") this.self = { did: msg.did, connId: msg.connId };
      this.emitEvent("message", msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.self = null;
      this.lastError = ev.reason || `closed (${ev.code})`;
      const wasOpen = this.state === "open";
      this.setState("closed");
      if (wasOpen) this.emitEvent("close");
      this.scheduleReconnect();
    };
  }

  private scheduleReconnect(): void {
    this.setState("closed");
    if (this.stopped) return;
    const min = this.opts.minBackoffMs ?? 500;
    const max = this.opts.maxBackoffMs ?? 10_000;
    const delay = Math.min(max, min * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
    this.timer = setTimeout(() => void this.connect(), delay);
  }
}
