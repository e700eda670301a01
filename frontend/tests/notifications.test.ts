import { describe, expect, it } from "vitest";
import {
  cappedLevel,
  deviceLevel,
  noticeUrgency,
  notifyMentions,
  openMail,
  parseUrgency,
  shouldNotify,
  urgencyFor,
  type Urgency,
} from "../src/lib/notifications";
import * as S from "../src/lib/schema";
import { decodeFrame } from "../src/lib/frame";
import { generateIdentity } from "../src/lib/identity";
import { Automerge } from "@automerge/automerge-repo/slim";
import type { CatalogDoc, Level } from "../src/lib/schema";

describe("urgencyFor", () => {
  it("keeps messages gentle unless the sender deliberately pings", () => {
    expect(urgencyFor({ ping: false, dm: false })).toBe("quiet");
    expect(urgencyFor({ ping: false, dm: true })).toBe("normal");
    expect(urgencyFor({ ping: true, dm: false })).toBe("ping");
    expect(urgencyFor({ ping: true, dm: true })).toBe("ping");
  });

  it("reads a mail header's urgency as the router does", () => {
    for (const u of ["quiet", "normal", "ping", "urgent"]) expect(parseUrgency(u)).toBe(u);
    expect(parseUrgency("loud")).toBe("normal");
    expect(parseUrgency(undefined)).toBe("normal");
  });
});

describe("noticeUrgency mirrors router/urgency.py", () => {
  // The table in router/urgency.py's docstring, row by row.
  const table: Record<Urgency, Record<Level, string | null>> = {
    quiet: { silent: null, quiet: "very-low", engaged: "very-low", busy: null },
    normal: { silent: null, quiet: "low", engaged: "low", busy: null },
    ping: { silent: null, quiet: "low", engaged: "normal", busy: "normal" },
    urgent: { silent: null, quiet: "low", engaged: "normal", busy: "normal" },
  };
  for (const [urgency, row] of Object.entries(table) as [Urgency, Record<Level, string | null>][]) {
    for (const level of S.LEVELS) {
      it(`${urgency} at ${level} -> ${row[level] ?? "nothing"}`, () => {
        expect(noticeUrgency(level, urgency)).toBe(row[level]);
        expect(shouldNotify(level, urgency)).toBe(row[level] !== null);
      });
    }
  }

  it("a plain mention in a busy or silent channel gives no notice; a ping gets through busy only", () => {
    const mention = urgencyFor({ ping: false, dm: false });
    const ping = urgencyFor({ ping: true, dm: false });
    expect(shouldNotify("busy", mention)).toBe(false);
    expect(shouldNotify("silent", mention)).toBe(false);
    expect(shouldNotify("busy", ping)).toBe(true);
    expect(shouldNotify("silent", ping)).toBe(false);
  });
});

describe("levels", () => {
  it("levelFor: a channel's own level, else its space's, else engaged", () => {
    let c = Automerge.change(Automerge.init<CatalogDoc>(), (d) => S.initCatalog(d, "did:key:zMe"));
    expect(S.levelFor(c, "automerge:ch", "automerge:sp")).toBe("engaged");
    c = Automerge.change(c, (d) => S.setLevel(d, "automerge:sp", "silent"));
    expect(S.levelFor(c, "automerge:ch", "automerge:sp")).toBe("silent");
    expect(S.levelFor(c, "automerge:ch", "automerge:other")).toBe("engaged");
    c = Automerge.change(c, (d) => S.setLevel(d, "automerge:ch", "busy"));
    expect(S.levelFor(c, "automerge:ch", "automerge:sp")).toBe("busy");
  });

  it("a device registers at the most permissive level in force, capped by its own", () => {
    expect(deviceLevel([], "engaged")).toBe("engaged");
    expect(deviceLevel(["silent", "silent"], "engaged")).toBe("silent");
    expect(deviceLevel(["silent", "busy"], "engaged")).toBe("busy");
    expect(deviceLevel(["busy", "quiet"], "engaged")).toBe("quiet");
    expect(deviceLevel(["quiet", "engaged"], "engaged")).toBe("engaged");
    expect(deviceLevel(["engaged"], "busy")).toBe("busy");
    expect(deviceLevel(["silent"], "busy")).toBe("silent");
    expect(deviceLevel([], "silent")).toBe("silent");
  });

  it("a channel's subscription is capped by the device level", () => {
    expect(cappedLevel("engaged", "quiet")).toBe("quiet");
    expect(cappedLevel("quiet", "engaged")).toBe("quiet");
    expect(cappedLevel("quiet", "busy")).toBe("busy");
    expect(cappedLevel("silent", "engaged")).toBe("silent");
  });
});

describe("notifyMentions", () => {
  async function sent(opts: { ping: boolean; dm?: boolean }) {
    const alice = await generateIdentity();
    const bob = await generateIdentity();
    const frames: Uint8Array[] = [];
    const router = { send: (f: Uint8Array) => frames.push(f) } as unknown as Parameters<typeof notifyMentions>[0];
    await notifyMentions(router, alice, [bob.did], {
      channel: "automerge:ch",
      space: "automerge:sp",
      msgId: "m1",
      text: "@Bob look",
      ...opts,
    });
    expect(frames).toHaveLength(1);
    const { header, body } = decodeFrame(frames[0]);
    const [verb, to, mailId, ttl, urgency] = header as [string, string, string, number, string];
    expect([verb, to]).toEqual(["mail", bob.did]);
    expect(ttl).toBeGreaterThan(0);
    const mail = await openMail(bob, alice.did, mailId, body);
    return { urgency, mail };
  }

  it("a deliberate ping goes out as a mail of urgency ping", async () => {
    const { urgency, mail } = await sent({ ping: true });
    expect(urgency).toBe("ping");
    expect(mail).toMatchObject({ kind: "ping", channel: "automerge:ch", space: "automerge:sp", msgId: "m1" });
  });

  it("a plain mention is quiet and a DM normal", async () => {
    expect((await sent({ ping: false })).urgency).toBe("quiet");
    const dm = await sent({ ping: false, dm: true });
    expect(dm.urgency).toBe("normal");
    expect(dm.mail?.kind).toBe("dm");
  });
});
