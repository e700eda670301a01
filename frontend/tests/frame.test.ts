import { describe, expect, it } from "vitest";
import {
  decodeFrame,
  encodeFrame,
  FrameError,
  listenFrame,
  mailFrame,
  parseRouterFrame,
  sendFrame,
} from "../src/lib/frame";

const bytes = (...b: number[]) => new Uint8Array(b);

function rawFrame(headerText: string, body = new Uint8Array()): Uint8Array {
  const head = new TextEncoder().encode(headerText);
  const out = new Uint8Array(4 + head.length + body.length);
  new DataView(out.buffer).setUint32(0, head.length, true);
  out.set(head, 4);
  out.set(body, 4 + head.length);
  return out;
}

describe("frame codec", () => {
  it("writes a little-endian length, the JSON header, then the body", () => {
    const frame = encodeFrame(["send", "did:key:zA", "c1", "doc"], bytes(1, 2, 3));
    const header = '["send","did:key:zA","c1","doc"]';
    expect([...frame.subarray(0, 4)]).toEqual([header.length, 0, 0, 0]);
    expect(new TextDecoder().decode(frame.subarray(4, 4 + header.length))).toBe(header);
    expect([...frame.subarray(4 + header.length)]).toEqual([1, 2, 3]);
  });

  it("round-trips headers with unicode and empty or large bodies", () => {
    for (const body of [new Uint8Array(), new Uint8Array(70_000).fill(7)]) {
      const { header, body: out } = decodeFrame(encodeFrame(["listen", "dóc", "☃"], body));
      expect(header).toEqual(["listen", "dóc", "☃"]);
      expect(out).toEqual(body);
    }
  });

  it("accepts a frame that is a view into a larger buffer", () => {
    const inner = encodeFrame(["join", "a", "b", "c"]);
    const big = new Uint8Array(inner.length + 10);
    big.set(inner, 5);
    expect(decodeFrame(big.subarray(5, 5 + inner.length)).header).toEqual(["join", "a", "b", "c"]);
  });

  it.each([
    ["shorter than the prefix", bytes(1, 0)],
    ["length beyond the frame", bytes(50, 0, 0, 0, 0x5b, 0x5d)],
    ["header not JSON", rawFrame("[nope")],
    ["header not an array", rawFrame('{"a":1}')],
    ["empty array", rawFrame("[]")],
    ["verb not a string", rawFrame("[1,2]")],
    ["invalid UTF-8", (() => { const f = rawFrame('["x"]'); f[5] = 0xff; return f; })()],
  ])("rejects a frame %s", (_what, frame) => {
    expect(() => decodeFrame(frame)).toThrow(FrameError);
  });
});

describe("router messages", () => {
  it("parses every router->client verb into a typed message", () => {
    expect(parseRouterFrame(encodeFrame(["welcome", "did:a", "01C", { version: "1" }]))).toEqual({
      verb: "welcome", did: "did:a", connId: "01C", info: { version: "1" },
    });
    expect(parseRouterFrame(encodeFrame(["join", "did:a", "c", "d"]))).toMatchObject({ verb: "join", docId: "d" });
    expect(parseRouterFrame(encodeFrame(["leave", "did:a", "c", "d"]))).toMatchObject({ verb: "leave" });
    const send = parseRouterFrame(encodeFrame(["send", "did:a", "c", "d"], bytes(9)));
    expect(send).toMatchObject({ verb: "send", did: "did:a", connId: "c", docId: "d" });
    expect(send.verb === "send" && [...send.body]).toEqual([9]);
    const ice = parseRouterFrame(
      encodeFrame(["ice-servers", 600], new TextEncoder().encode('{"iceServers":[{"urls":"stun:x"}]}')),
    );
    expect(ice).toEqual({ verb: "ice-servers", ttl: 600, iceServers: [{ urls: "stun:x" }] });
    expect(parseRouterFrame(encodeFrame(["mail", "did:a", "m1", 1700, "low"], bytes(1)))).toMatchObject({
      verb: "mail", from: "did:a", msgId: "m1", sentAt: 1700, urgency: "low",
    });
    expect(parseRouterFrame(encodeFrame(["receipt", "m1", "stored"]))).toEqual({
      verb: "receipt", msgId: "m1", status: "stored",
    });
    expect(parseRouterFrame(encodeFrame(["error", "unknown_verb", "no", "signal"]))).toEqual({
      verb: "error", code: "unknown_verb", message: "no", about: "signal",
    });
  });

  it.each([
    [["join", "did:a", "c"]],
    [["send", "did:a", "c", 4]],
    [["unheard-of", "x"]],
    [["receipt", "m1"]],
  ])("rejects %j", (header) => {
    expect(() => parseRouterFrame(encodeFrame(header))).toThrow(FrameError);
  });

  it("builds client->router frames", () => {
    expect(decodeFrame(listenFrame(["a", "b"])).header).toEqual(["listen", "a", "b"]);
    expect(decodeFrame(sendFrame("did:b", "c2", "d", bytes(1))).header).toEqual(["send", "did:b", "c2", "d"]);
    expect(decodeFrame(mailFrame("did:b", "m", 60, "quiet", bytes())).header).toEqual([
      "mail", "did:b", "m", 60, "quiet",
    ]);
  });
});
