import { Automerge } from "@automerge/automerge-repo/slim";
import { describe, expect, it } from "vitest";
import * as S from "../src/lib/schema";
import type { CatalogDoc, ChannelDoc, SpaceDoc } from "../src/lib/schema";

const ALICE = "did:key:zAlice";
const BOB = "did:key:zBob";

function space(): Automerge.Doc<SpaceDoc> {
  return Automerge.change(Automerge.init<SpaceDoc>(), (d) =>
    S.initSpace(d, { name: "  Garden  ", creator: ALICE, creatorName: "Alice", now: 1 }),
  );
}

function channel(): Automerge.Doc<ChannelDoc> {
  return Automerge.change(Automerge.init<ChannelDoc>(), (d) =>
    S.initChannel(d, { name: "General Chat", spaceUrl: "automerge:space" }),
  );
}

const post = (doc: Automerge.Doc<ChannelDoc>, id: string, author: string, text: string, extra = {}) =>
  Automerge.change(doc, (d) => S.postMessage(d, { id, author, text, now: Date.now(), ...extra }));

describe("catalog", () => {
  it("remembers spaces, DMs, read positions and notification levels", () => {
    let c = Automerge.change(Automerge.init<CatalogDoc>(), (d) => S.initCatalog(d, ALICE));
    c = Automerge.change(c, (d) => {
      S.setDisplayName(d, "  Alice  ");
      S.rememberSpace(d, "automerge:s1", 5);
      S.rememberSpace(d, "automerge:s1", 9);
      S.rememberDm(d, BOB, "automerge:dm");
      S.markRead(d, "automerge:ch", ["bb", "aa"]);
      S.setLevel(d, "automerge:s1", "quiet");
    });
    expect(c.displayName).toBe("Alice");
    expect(c.spaces).toEqual({ "automerge:s1": { joinedAt: 5 } });
    expect(c.dms[BOB]).toBe("automerge:dm");
    expect(c.reads["automerge:ch"]).toEqual({ heads: ["aa", "bb"] });
    expect(S.isReadAt(c.reads["automerge:ch"], ["aa", "bb"])).toBe(true);
    expect(S.isReadAt(c.reads["automerge:ch"], ["aa"])).toBe(false);
    expect(S.levelFor(c, "automerge:ch", "automerge:s1")).toBe("quiet");
    c = Automerge.change(c, (d) => S.setLevel(d, "automerge:ch", "busy"));
    expect(S.levelFor(c, "automerge:ch", "automerge:s1")).toBe("busy");
    expect(S.levelFor(c, "automerge:other", "automerge:none")).toBe("engaged");
    c = Automerge.change(c, (d) => S.forgetSpace(d, "automerge:s1"));
    expect(c.spaces).toEqual({});
    expect(c.notify["automerge:s1"]).toBeUndefined();
  });
});

describe("space", () => {
  it("starts with its creator as owner and adds channels once", () => {
    let s = space();
    expect(s.name).toBe("Garden");
    expect(S.activeMembers(s)).toEqual([[ALICE, { name: "Alice", role: "owner", joinedAt: 1 }]]);
    s = Automerge.change(s, (d) => {
      S.addChannel(d, { url: "automerge:c1", name: "#Random Stuff", createdAt: 2 });
      S.addChannel(d, { url: "automerge:c1", name: "again", createdAt: 3 });
    });
    expect(s.channels).toEqual([{ url: "automerge:c1", name: "random-stuff", createdAt: 2 }]);
  });

  it("lets people join, leave and come back; refuses banned DIDs", () => {
    let s = space();
    s = Automerge.change(s, (d) => expect(S.joinSpace(d, BOB, "Bob", 2)).toBe(true));
    expect(S.isMember(s, BOB)).toBe(true);
    s = Automerge.change(s, (d) => S.leaveSpace(d, BOB, 3));
    expect(S.isMember(s, BOB)).toBe(false);
    expect(S.activeMembers(s).map(([did]) => did)).toEqual([ALICE]);
    s = Automerge.change(s, (d) => S.joinSpace(d, BOB, "Robert", 4));
    expect(s.members[BOB]).toEqual({ name: "Robert", role: "member", joinedAt: 2 });
    s = Automerge.change(s, (d) => {
      d.bans.push("did:key:zMallory");
      expect(S.joinSpace(d, "did:key:zMallory", "M", 5)).toBe(false);
    });
    expect(S.isMember(s, "did:key:zMallory")).toBe(false);
  });

  it("merges two people joining at the same time", () => {
    const base = space();
    const a = Automerge.change(Automerge.clone(base), (d) => S.joinSpace(d, BOB, "Bob", 2));
    const b = Automerge.change(Automerge.clone(base), (d) => S.joinSpace(d, "did:key:zCarol", "Carol", 2));
    const merged = Automerge.merge(a, b);
    expect(S.activeMembers(merged).map(([, m]) => m.name).sort()).toEqual(["Alice", "Bob", "Carol"]);
  });
});

describe("channel messages", () => {
  it("posts, replies in threads, and keeps deleted roots only when answered", () => {
    let c = channel();
    expect(c.name).toBe("general-chat");
    c = post(c, "m1", ALICE, "hello");
    c = post(c, "m2", BOB, "hi!", { replyTo: "m1" });
    c = post(c, "m3", BOB, "@Alice look", { mentions: [ALICE], ping: true });
    expect(S.timeline(c).map((m) => m.id)).toEqual(["m1", "m3"]);
    expect(S.replies(c, "m1").map((m) => m.text)).toEqual(["hi!"]);
    expect(c.messages[2]).toMatchObject({ ping: true, mentions: [ALICE] });

    c = Automerge.change(c, (d) => expect(S.deleteMessage(d, "m1", ALICE, 9)).toBe(true));
    expect(S.timeline(c).map((m) => m.id)).toEqual(["m1", "m3"]);
    expect(c.messages[0]).toMatchObject({ deleted: true, text: "" });
    c = Automerge.change(c, (d) => S.deleteMessage(d, "m2", BOB, 10));
    expect(S.timeline(c).map((m) => m.id)).toEqual(["m3"]);
  });

  it("lets only the author edit or delete", () => {
    let c = post(channel(), "m1", ALICE, "hello");
    c = Automerge.change(c, (d) => {
      expect(S.editMessage(d, "m1", BOB, "hacked", 2)).toBe(false);
      expect(S.deleteMessage(d, "m1", BOB, 2)).toBe(false);
      expect(S.editMessage(d, "nope", ALICE, "x", 2)).toBe(false);
    });
    expect(c.messages[0].text).toBe("hello");
    c = Automerge.change(c, (d) => expect(S.editMessage(d, "m1", ALICE, "hello there", 3)).toBe(true));
    expect(c.messages[0]).toMatchObject({ text: "hello there", editedAt: 3 });
  });

  it("merges concurrent edits of one message character by character (Automerge text)", () => {
    const base = post(channel(), "m1", ALICE, "the cat sat");
    const a = Automerge.change(Automerge.clone(base), (d) => S.editMessage(d, "m1", ALICE, "the black cat sat", 2));
    const b = Automerge.change(Automerge.clone(base), (d) => S.editMessage(d, "m1", ALICE, "the cat sat down", 2));
    expect(Automerge.merge(a, b).messages[0].text).toBe("the black cat sat down");
  });

  it("keeps concurrent posts from both sides, each once", () => {
    const base = post(channel(), "m0", ALICE, "start");
    let a = Automerge.clone(base);
    let b = Automerge.clone(base);
    for (let i = 1; i <= 3; i++) {
      a = post(a, `a${i}`, ALICE, `from alice ${i}`);
      b = post(b, `b${i}`, BOB, `from bob ${i}`);
    }
    const merged = Automerge.merge(a, b);
    const ids = merged.messages.map((m) => m.id);
    expect(ids).toHaveLength(7);
    expect(ids.filter((id) => id.startsWith("a"))).toEqual(["a1", "a2", "a3"]);
    expect(ids.filter((id) => id.startsWith("b"))).toEqual(["b1", "b2", "b3"]);
  });

  it("shows messages in the order they were written, whatever order they merged in", () => {
    const base = channel();
    const a = Automerge.change(Automerge.clone(base), (d) => {
      S.postMessage(d, { id: "a1", author: ALICE, text: "first", now: 10 });
      S.postMessage(d, { id: "a2", author: ALICE, text: "third", now: 30 });
    });
    const b = Automerge.change(Automerge.clone(base), (d) =>
      S.postMessage(d, { id: "b1", author: BOB, text: "second", now: 20 }),
    );
    for (const merged of [Automerge.merge(Automerge.clone(a), b), Automerge.merge(Automerge.clone(b), a)]) {
      expect(S.timeline(merged).map((m) => m.text)).toEqual(["first", "second", "third"]);
    }
  });

  it("counts unread messages by others not seen, ignoring deleted ones", () => {
    let c = channel();
    c = post(c, "m1", ALICE, "one");
    c = post(c, "m2", BOB, "two");
    expect(S.unreadCount(c, undefined, BOB)).toBe(1);
    expect(S.unreadCount(c, undefined, ALICE)).toBe(1);
    const read = { heads: Automerge.getHeads(c) };
    expect(S.unreadCount(c, read, ALICE)).toBe(0);
    c = post(c, "m3", BOB, "three");
    c = post(c, "m4", BOB, "four");
    expect(S.unreadCount(c, read, ALICE)).toBe(2);
    c = Automerge.change(c, (d) => S.deleteMessage(d, "m4", BOB, 5));
    expect(S.unreadCount(c, read, ALICE)).toBe(1);
  });

  it("counts messages merged in before one's own offline posts as unread", () => {
    let base = channel();
    base = post(base, "m1", BOB, "seen by both");
    // Actor ids fixed so the merge puts Bob's appends before Alice's.
    let alice = Automerge.clone(base, { actor: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" });
    let bob = Automerge.clone(base, { actor: "ffffffffffffffffffffffffffffffff" });
    // Bob writes two while Alice is offline and writes three of her own.
    bob = post(bob, "b1", BOB, "while you were away");
    bob = post(bob, "b2", BOB, "and again");
    alice = post(alice, "a1", ALICE, "offline one");
    alice = post(alice, "a2", ALICE, "offline two");
    alice = post(alice, "a3", ALICE, "offline three");
    // Posting marks the channel read, as the app does.
    let catalog = Automerge.change(Automerge.init<CatalogDoc>(), (d) => S.initCatalog(d, ALICE));
    catalog = Automerge.change(catalog, (d) => S.markRead(d, "automerge:ch", Automerge.getHeads(alice)));
    const merged = Automerge.merge(Automerge.clone(alice), bob);
    const mark = catalog.reads["automerge:ch"];
    expect(S.unreadCount(merged, mark, ALICE)).toBe(2);
    // Bob's two sit before Alice's three: a count of the four messages Alice had
    // when she posted would call her own posts unread and Bob's read.
    expect(merged.messages.map((m) => m.id)).toEqual(["m1", "b1", "b2", "a1", "a2", "a3"]);
    expect(S.unreadCount(merged, alice.messages.length, ALICE)).toBe(0);
    expect(S.unreadCount(Automerge.merge(Automerge.clone(bob), alice), mark, ALICE)).toBe(2);
    catalog = Automerge.change(catalog, (d) => S.markRead(d, "automerge:ch", Automerge.getHeads(merged)));
    expect(S.unreadCount(merged, catalog.reads["automerge:ch"], ALICE)).toBe(0);
  });

  it("reads catalogs that kept a message count, and replaces the count on the next read", () => {
    let c = channel();
    c = post(c, "m1", ALICE, "one");
    c = post(c, "m2", ALICE, "two");
    c = post(c, "m3", ALICE, "three");
    let catalog = Automerge.change(Automerge.init<CatalogDoc>(), (d) => {
      S.initCatalog(d, BOB);
      (d.reads as Record<string, number>)["automerge:ch"] = 2; // as older versions wrote it
    });
    expect(S.unreadCount(c, catalog.reads["automerge:ch"], BOB)).toBe(1);
    expect(S.isReadAt(catalog.reads["automerge:ch"], Automerge.getHeads(c))).toBe(false);
    catalog = Automerge.change(catalog, (d) => S.markRead(d, "automerge:ch", Automerge.getHeads(c)));
    expect(catalog.reads["automerge:ch"]).toEqual({ heads: Automerge.getHeads(c) });
    expect(S.unreadCount(c, catalog.reads["automerge:ch"], BOB)).toBe(0);
  });

  it("counts nothing while this copy lacks the heads the reader saw", () => {
    const c = post(channel(), "m1", ALICE, "one");
    const ahead = post(Automerge.clone(c), "m2", ALICE, "two");
    expect(S.unreadCount(c, { heads: Automerge.getHeads(ahead) }, BOB)).toBe(0);
  });
});

describe("DMs and mentions", () => {
  it("a DM has exactly its two members", () => {
    const dm = Automerge.change(Automerge.init<ChannelDoc>(), (d) => S.initDm(d, BOB, ALICE));
    expect(dm.type).toBe("hearth.dm");
    expect(dm.members).toEqual([ALICE, BOB]);
    expect(dm.space).toBe("");
  });

  it("finds @mentions by display name, longest first, not inside words", () => {
    const members: [string, string][] = [
      [ALICE, "Alice"],
      ["did:key:zAl", "Al"],
      [BOB, "Bob Smith"],
    ];
    expect(S.findMentions("hey @alice, and @Bob Smith!", members).sort()).toEqual([ALICE, BOB].sort());
    expect(S.findMentions("@Al: ping", members)).toEqual(["did:key:zAl"]);
    expect(S.findMentions("mail me at x@Alice.com", members)).toEqual([]);
  });
});
