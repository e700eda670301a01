// The documents Hearth keeps, and every change the app makes to them, as plain
// functions over Automerge documents (called inside `handle.change`), so the
// schema can be tested without a repo or a network.
//
// catalog  — one per user, private: display name, the spaces and DMs joined,
//            read positions, notification levels.
// space    — name, channels, members (with roles), bans, join policy.
// channel  — messages (Automerge text), replies by `replyTo`; a DM is a
//            channel with exactly two members and no space.

import { Automerge } from "@automerge/automerge-repo/slim";

export type Level = "silent" | "quiet" | "engaged" | "busy";
export const LEVELS: Level[] = ["silent", "quiet", "engaged", "busy"];

export interface CatalogDoc {
  type: "hearth.catalog";
  v: 1;
  owner: string;
  displayName: string;
  /** space URL -> when it was joined */
  spaces: Record<string, { joinedAt: number }>;
  /** peer DID -> DM channel URL */
  dms: Record<string, string>;
  /** channel URL -> what was seen of it (a number: a message count, from older catalogs) */
  reads: Record<string, ReadMark | number>;
  /** space or channel URL -> notification level */
  notify: Record<string, Level>;
}

/**
 * What a reader had seen of a channel: the channel document's heads when
 * they last looked. Every message in the document at those heads was seen,
 * whatever list position concurrent appends give it later.
 */
export interface ReadMark {
  heads: string[];
}

export type Role = "owner" | "admin" | "member";

export interface Member {
  name: string;
  role: Role;
  joinedAt: number;
  /** set when the member left; they may join again */
  leftAt?: number;
}

export interface ChannelRef {
  url: string;
  name: string;
  createdAt: number;
  /** who created the channel document (its owner on the syncserver) */
  createdBy?: string;
}

export interface SpaceDoc {
  type: "hearth.space";
  v: 1;
  name: string;
  createdBy: string;
  createdAt: number;
  joinPolicy: "link" | "invite-only";
  channels: ChannelRef[];
  members: Record<string, Member>;
  bans: string[];
}

export interface Message {
  id: string;
  author: string;
  createdAt: number;
  /** Automerge text: edits merge character by character */
  text: string;
  editedAt?: number;
  deleted?: boolean;
  /** id of the message this one answers (a thread) */
  replyTo?: string;
  /** a deliberate ping: notifies above the usual gentleness */
  ping?: boolean;
  /** DIDs mentioned in the text */
  mentions?: string[];
}

export interface ChannelDoc {
  type: "hearth.channel" | "hearth.dm";
  v: 1;
  name: string;
  /** the space's URL, or "" for a DM */
  space: string;
  /** DM only: its two members */
  members?: string[];
  messages: Message[];
}

// --- catalog ----------------------------------------------------------------

export function initCatalog(d: CatalogDoc, owner: string, displayName = ""): void {
  d.type = "hearth.catalog";
  d.v = 1;
  d.owner = owner;
  d.displayName = displayName;
  d.spaces = {};
  d.dms = {};
  d.reads = {};
  d.notify = {};
}

export function setDisplayName(d: CatalogDoc, name: string): void {
  d.displayName = name.trim().slice(0, 64);
}

export function rememberSpace(d: CatalogDoc, spaceUrl: string, now: number): void {
  if (!d.spaces[spaceUrl]) d.spaces[spaceUrl] = { joinedAt: now };
}

export function forgetSpace(d: CatalogDoc, spaceUrl: string): void {
  delete d.spaces[spaceUrl];
  delete d.notify[spaceUrl];
}

export function rememberDm(d: CatalogDoc, peerDid: string, dmUrl: string): void {
  if (!d.dms[peerDid]) d.dms[peerDid] = dmUrl;
}

/** Records that the reader has seen the channel as it is at `heads` (`Automerge.getHeads`). */
export function markRead(d: CatalogDoc, channelUrl: string, heads: string[]): void {
  if (!isReadAt(d.reads[channelUrl], heads)) d.reads[channelUrl] = { heads: [...heads].sort() };
}

/** Whether `mark` already says the channel was seen at exactly `heads`. */
export function isReadAt(mark: ReadMark | number | undefined, heads: string[]): boolean {
  if (typeof mark !== "object" || mark.heads.length !== heads.length) return false;
  const sorted = [...heads].sort();
  return mark.heads.every((h, i) => h === sorted[i]);
}

export function setLevel(d: CatalogDoc, url: string, level: Level): void {
  d.notify[url] = level;
}

/** The level in force for a channel: its own, else its space's, else "engaged". */
export function levelFor(c: CatalogDoc, channelUrl: string, spaceUrl: string): Level {
  return c.notify[channelUrl] ?? c.notify[spaceUrl] ?? "engaged";
}

// --- space ------------------------------------------------------------------

export function initSpace(
  d: SpaceDoc,
  opts: { name: string; creator: string; creatorName: string; now: number },
): void {
  d.type = "hearth.space";
  d.v = 1;
  d.name = opts.name.trim().slice(0, 100) || "Untitled space";
  d.createdBy = opts.creator;
  d.createdAt = opts.now;
  d.joinPolicy = "link";
  d.channels = [];
  d.members = { [opts.creator]: { name: opts.creatorName, role: "owner", joinedAt: opts.now } };
  d.bans = [];
}

export function addChannel(d: SpaceDoc, ref: ChannelRef): void {
  if (d.channels.some((c) => c.url === ref.url)) return;
  const clean: ChannelRef = { url: ref.url, name: cleanChannelName(ref.name), createdAt: ref.createdAt };
  if (ref.createdBy) clean.createdBy = ref.createdBy;
  d.channels.push(clean);
}

export function cleanChannelName(name: string): string {
  return (
    name
      .trim()
      .toLowerCase()
      .replace(/^#/, "")
      .replace(/\s+/g, "-")
      .slice(0, 80) || "general"
  );
}

/** Adds (or re-admits) `did`; refused for banned DIDs. Returns whether it is a member now. */
export function joinSpace(d: SpaceDoc, did: string, name: string, now: number): boolean {
  if (d.bans.includes(did)) return false;
  const m = d.members[did];
  if (!m) {
    d.members[did] = { name, role: "member", joinedAt: now };
  } else {
    if (m.leftAt !== undefined) delete m.leftAt;
    if (name && m.name !== name) m.name = name;
  }
  return true;
}

export function leaveSpace(d: SpaceDoc, did: string, now: number): void {
  const m = d.members[did];
  if (m && m.leftAt === undefined) m.leftAt = now;
}

export function activeMembers(d: SpaceDoc): [string, Member][] {
  return Object.entries(d.members ?? {})
    .filter(([, m]) => m.leftAt === undefined)
    .sort((a, b) => a[1].joinedAt - b[1].joinedAt || a[0].localeCompare(b[0]));
}

export function isMember(d: SpaceDoc, did: string): boolean {
  const m = d.members?.[did];
  return !!m && m.leftAt === undefined && !d.bans.includes(did);
}

// --- channels and DMs -------------------------------------------------------

export function initChannel(d: ChannelDoc, opts: { name: string; spaceUrl: string }): void {
  d.type = "hearth.channel";
  d.v = 1;
  d.name = cleanChannelName(opts.name);
  d.space = opts.spaceUrl;
  d.messages = [];
}

export function initDm(d: ChannelDoc, a: string, b: string): void {
  d.type = "hearth.dm";
  d.v = 1;
  d.name = "";
  d.space = "";
  d.members = [a, b].sort();
  d.messages = [];
}

export function newMessageId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(10));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function postMessage(
  d: ChannelDoc,
  m: { id: string; author: string; text: string; now: number; replyTo?: string; ping?: boolean; mentions?: string[] },
): void {
  const msg: Message = { id: m.id, author: m.author, createdAt: m.now, text: m.text };
  if (m.replyTo) msg.replyTo = m.replyTo;
  if (m.ping) msg.ping = true;
  if (m.mentions?.length) msg.mentions = m.mentions;
  d.messages.push(msg);
}

function findIndex(d: ChannelDoc, id: string): number {
  return d.messages.findIndex((m) => m.id === id);
}

/** Edits a message's text in place; only its author may. Returns whether it changed. */
export function editMessage(d: ChannelDoc, id: string, by: string, text: string, now: number): boolean {
  const i = findIndex(d, id);
  if (i < 0 || d.messages[i].author !== by || d.messages[i].deleted) return false;
  Automerge.updateText(d, ["messages", i, "text"], text);
  d.messages[i].editedAt = now;
  return true;
}

/** Deletes a message (a tombstone keeps thread replies anchored); only its author may. */
export function deleteMessage(d: ChannelDoc, id: string, by: string, now: number): boolean {
  const i = findIndex(d, id);
  if (i < 0 || d.messages[i].author !== by || d.messages[i].deleted) return false;
  Automerge.updateText(d, ["messages", i, "text"], "");
  d.messages[i].deleted = true;
  d.messages[i].editedAt = now;
  return true;
}

/**
 * Top-level messages (not replies) in the order they were written: concurrent
 * appends merge in an arbitrary (if deterministic) list order, so sort by
 * time, list order breaking ties. Tombstones without replies are left out.
 */
export function timeline(d: ChannelDoc): Message[] {
  const replied = new Set(d.messages.filter((m) => m.replyTo && !m.deleted).map((m) => m.replyTo));
  return byTime(d.messages.filter((m) => !m.replyTo && (!m.deleted || replied.has(m.id))));
}

function byTime(messages: Message[]): Message[] {
  return messages
    .map((m, i) => [m, i] as const)
    .sort((a, b) => a[0].createdAt - b[0].createdAt || a[1] - b[1])
    .map(([m]) => m);
}

export function replies(d: ChannelDoc, id: string): Message[] {
  return byTime(d.messages.filter((m) => m.replyTo === id && !m.deleted));
}

// Heads name one state of one document, so what was seen at them never changes.
const seenAt = new Map<string, Set<string>>();
const SEEN_CACHE = 256;

/**
 * Ids of the messages a reader had seen: those in the channel at the mark's
 * heads; for a count from an older catalog, the first that many in list
 * order (its old meaning). Null when this copy of the channel does not have
 * those heads yet.
 */
export function seenIds(d: Automerge.Doc<ChannelDoc>, mark: ReadMark | number | undefined): Set<string> | null {
  if (mark === undefined) return new Set();
  if (typeof mark === "number") return new Set(d.messages.slice(0, mark).map((m) => m.id));
  const key = mark.heads.join(",");
  let ids = seenAt.get(key);
  if (!ids) {
    if (!Automerge.hasHeads(d, mark.heads)) return null;
    ids = new Set((Automerge.view(d, mark.heads).messages ?? []).map((m) => m.id));
    if (seenAt.size >= SEEN_CACHE) seenAt.delete(seenAt.keys().next().value!);
    seenAt.set(key, ids);
  }
  return ids;
}

/** Messages by others, not deleted, that the reader has not seen (0 while their mark is ahead of this copy). */
export function unreadCount(d: Automerge.Doc<ChannelDoc>, mark: ReadMark | number | undefined, me: string): number {
  const seen = seenIds(d, mark);
  if (!seen) return 0;
  return d.messages.filter((m) => m.author !== me && !m.deleted && !seen.has(m.id)).length;
}

/** DIDs mentioned as `@name` among `members` (name -> did), longest names first. */
export function findMentions(text: string, members: [string, string][]): string[] {
  const found = new Set<string>();
  const byLength = [...members].sort((a, b) => b[1].length - a[1].length);
  for (const [did, name] of byLength) {
    if (!name) continue;
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    if (new RegExp(`(^|\\s)@${escaped}(?=$|[\\s.,!?:;])`, "i").test(text)) found.add(did);
  }
  return [...found];
}
