// Router wire frames: [u32 little-endian N][N bytes UTF-8 JSON array header][body].
// Parsed into typed messages at the boundary; nothing else handles raw headers.

export class FrameError extends Error {}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const EMPTY = new Uint8Array(0);

export function encodeFrame(header: readonly unknown[], body: Uint8Array = EMPTY): Uint8Array {
  const head = encoder.encode(JSON.stringify(header));
  const out = new Uint8Array(4 + head.length + body.length);
  new DataView(out.buffer).setUint32(0, head.length, true);
  out.set(head, 4);
  out.set(body, 4 + head.length);
  return out;
}

export function decodeFrame(frame: Uint8Array): { header: unknown[]; body: Uint8Array } {
  if (frame.length < 4) throw new FrameError("frame shorter than its length prefix");
  const n = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(0, true);
  if (4 + n > frame.length) throw new FrameError("header length exceeds frame");
  let header: unknown;
  try {
    header = JSON.parse(decoder.decode(frame.subarray(4, 4 + n)));
  } catch {
    throw new FrameError("header is not UTF-8 JSON");
  }
  if (!Array.isArray(header) || header.length === 0 || typeof header[0] !== "string") {
    throw new FrameError("header must be a JSON array starting with a verb");
  }
  return { header, body: frame.subarray(4 + n) };
}

/** Messages the router sends us. */
export type RouterMessage =
  | { verb: "welcome"; did: string; connId: string; info: Record<string, unknown> }
  | { verb: "join" | "leave"; did: string; connId: string; docId: string }
  | { verb: "send" | "signal"; did: string; connId: string; docId: string; body: Uint8Array }
  | { verb: "ice-servers"; ttl: number; iceServers: RTCIceServer[] }
  | { verb: "mail"; from: string; msgId: string; sentAt: number; urgency: string; body: Uint8Array }
  | { verb: "receipt"; msgId: string; status: string }
  | { verb: "error"; code: string; message: string; about: string | null };

const isStr = (v: unknown): v is string => typeof v === "string";

function strings(h: unknown[], n: number): h is string[] {
  return h.length === n && h.every(isStr);
}

/** Parses one router->client frame; throws FrameError for anything malformed or unknown. */
export function parseRouterFrame(frame: Uint8Array): RouterMessage {
  const { header: h, body } = decodeFrame(frame);
  const verb = h[0] as string;
  switch (verb) {
    case "welcome":
      if (h.length >= 3 && isStr(h[1]) && isStr(h[2])) {
        const info = h[3] && typeof h[3] === "object" ? (h[3] as Record<string, unknown>) : {};
        return { verb, did: h[1], connId: h[2], info };
      }
      break;
    case "join":
    case "leave":
      if (strings(h, 4)) return { verb, did: h[1], connId: h[2], docId: h[3] };
      break;
    case "send":
    case "signal":
      if (strings(h, 4)) return { verb, did: h[1], connId: h[2], docId: h[3], body };
      break;
    case "ice-servers": {
      let parsed: unknown;
      try {
        parsed = JSON.parse(decoder.decode(body));
      } catch {
        throw new FrameError("ice-servers body is not JSON");
      }
      const list = (parsed as { iceServers?: unknown })?.iceServers;
      if (Array.isArray(list)) {
        return { verb, ttl: typeof h[1] === "number" ? h[1] : 0, iceServers: list as RTCIceServer[] };
      }
      break;
    }
    case "mail":
      if (h.length === 5 && isStr(h[1]) && isStr(h[2]) && isStr(h[4])) {
        return { verb, from: h[1], msgId: h[2], sentAt: Number(h[3]), urgency: h[4], body };
      }
      break;
    case "receipt":
      if (strings(h, 3)) return { verb, msgId: h[1], status: h[2] };
      break;
    case "error":
      if (h.length >= 3 && isStr(h[1]) && isStr(h[2])) {
        return { verb, code: h[1], message: h[2], about: isStr(h[3]) ? h[3] : null };
      }
      break;
  }
  throw new FrameError(`unexpected ${verb} frame: ${JSON.stringify(h).slice(0, 200)}`);
}

// Client->router frames.
export const listenFrame = (docIds: readonly string[]) => encodeFrame(["listen", ...docIds]);
export const sendFrame = (toDid: string, toConnId: string, docId: string, body: Uint8Array) =>
  encodeFrame(["send", toDid, toConnId, docId], body);
export const signalFrame = (toDid: string, toConnId: string, docId: string, payload: unknown) =>
  encodeFrame(["signal", toDid, toConnId, docId], encoder.encode(JSON.stringify(payload)));
export const iceServersFrame = () => encodeFrame(["ice-servers"]);
export const mailFrame = (toDid: string, msgId: string, ttl: number, urgency: string, body: Uint8Array) =>
  encodeFrame(["mail", toDid, msgId, ttl, urgency], body);
export const ackFrame = (msgId: string) => encodeFrame(["ack", msgId]);
export const deviceFrame = (deviceId: string) => encodeFrame(["device", deviceId]);

export function decodeJsonBody(body: Uint8Array): unknown {
  return JSON.parse(decoder.decode(body));
}
