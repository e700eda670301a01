// Notifications between people go through the router's mailbox (`mail`), so
// the recipient learns about a mention or a DM even when their app is closed.
// Every mail is sealed for its recipient and signed by its sender
// (`sealed.ts`, compatible with hearth.sealed).

import { mailFrame } from "./frame";
import type { RouterConnection } from "./router-connection";
import type { Level } from "./schema";
import type { Identity } from "./identity";
import { openSealed, seal } from "./sealed";

/** Sender urgencies the router understands, gentlest first. */
export type Urgency = "quiet" | "normal" | "ping" | "urgent";

/** Messages are gentle by default; a deliberate ping escalates. */
export function urgencyFor(opts: { ping: boolean; dm: boolean }): Urgency {
  if (opts.ping) return "ping";
  return opts.dm ? "normal" : "quiet";
}

/** RFC 8030 `Urgency` values, gentlest first. */
export type PushUrgency = "very-low" | "low" | "normal" | "high";

const REQUESTED: Record<Urgency, PushUrgency> = {
  quiet: "very-low",
  normal: "low",
  ping: "normal",
  urgent: "high",
};
const CAP: Record<Level, PushUrgency | null> = { silent: null, quiet: "low", engaged: "normal", busy: "normal" };
const ORDER: PushUrgency[] = ["very-low", "low", "normal", "high"];

/** A mail header's urgency as the router reads it; anything else counts as "normal". */
export function parseUrgency(value: unknown): Urgency {
  return value === "quiet" || value === "ping" || value === "urgent" ? value : "normal";
}

/**
 * The anti-urgency rule, exactly as the router applies it to pushes
 * (router/urgency.py): the sender's urgency maps to an RFC 8030 urgency,
 * capped by the recipient's level; null means no notice at all. silent:
 * nothing, not even pings; quiet: everything, at most "low"; engaged:
 * everything, at most "normal"; busy: only deliberate pings, at most "normal".
 */
export function noticeUrgency(level: Level, urgency: Urgency): PushUrgency | null {
  const cap = CAP[level];
  if (cap === null) return null;
  if (level === "busy" && urgency !== "ping" && urgency !== "urgent") return null;
  const wanted = REQUESTED[urgency];
  return ORDER.indexOf(wanted) <= ORDER.indexOf(cap) ? wanted : cap;
}

/** Whether a mail of `urgency` about something at `level` gives a notice (in the app or by push). */
export function shouldNotify(level: Level, urgency: Urgency): boolean {
  return noticeUrgency(level, urgency) !== null;
}

/** Levels from the one that lets least through to the one that lets most through. */
const PERMISSIVE: Level[] = ["silent", "busy", "quiet", "engaged"];

/**
 * The level to register a device at: the most permissive of `levels` (the
 * levels in force for every channel and DM; "engaged" when there are none),
 * capped by `cap`, the level the person chose for this device. The router
 * cannot tell which channel a sealed mail is about, so the device level must
 * let through whatever some channel lets through.
 */
export function deviceLevel(levels: Iterable<Level>, cap: Level): Level {
  let most = -1;
  for (const level of levels) most = Math.max(most, PERMISSIVE.indexOf(level));
  const wanted = most < 0 ? PERMISSIVE.length - 1 : most;
  return PERMISSIVE[Math.min(wanted, PERMISSIVE.indexOf(cap))];
}

/** The level a document subscription gets: the channel's own, capped by the device's. */
export function cappedLevel(level: Level, cap: Level): Level {
  return PERMISSIVE[Math.min(PERMISSIVE.indexOf(level), PERMISSIVE.indexOf(cap))];
}

const MAIL_TTL_SECONDS = 7 * 24 * 3600;

/** What a mail says, sealed for its recipient (hearth.sealed): the router sees only ciphertext. */
export interface MailPayload {
  kind: "mention" | "dm" | "ping";
  channel: string;
  /** the channel's space ("" for a DM): lets a recipient who has not opened the channel yet find its level */
  space?: string;
  msgId: string;
  preview: string;
}

export async function notifyMentions(
  router: RouterConnection,
  identity: Identity,
  dids: string[],
  about: { channel: string; space?: string; msgId: string; ping: boolean; dm?: boolean; text: string },
): Promise<void> {
  const urgency = urgencyFor({ ping: about.ping, dm: !!about.dm });
  const payload: MailPayload = {
    kind: about.dm ? "dm" : about.ping ? "ping" : "mention",
    channel: about.channel,
    space: about.space ?? "",
    msgId: about.msgId,
    preview: about.text.slice(0, 140),
  };
  const bytes = new TextEncoder().encode(JSON.stringify(payload));
  for (const did of dids) {
    const mailId = `${about.msgId}.${did.slice(-8)}`;
    let sealed: Uint8Array;
    try {
      sealed = await seal({
        payload: bytes,
        sender: identity.did,
        senderSeed: identity.seed,
        recipient: did,
        msgId: mailId,
      });
    } catch (e) {
      // No key to seal for (an atproto DID while the keyserver is down): skip only them.
      console.warn("cannot seal mail for", did, e instanceof Error ? e.message : e);
      continue;
    }
    router.send(mailFrame(did, mailId, MAIL_TTL_SECONDS, urgency, sealed));
  }
}

/** Opens a mail addressed to us; null when it is not a valid sealed mail from `from`. */
export async function openMail(
  identity: Identity,
  from: string,
  msgId: string,
  body: Uint8Array,
): Promise<MailPayload | null> {
  try {
    const opened = await openSealed({
      sealed: body,
      recipient: identity.did,
      recipientSeed: identity.seed,
      expectedSender: from,
      expectedMsgId: msgId,
    });
    return JSON.parse(new TextDecoder().decode(opened.payload)) as MailPayload;
  } catch (e) {
    console.warn("mail from", from, "could not be opened:", e);
    return null;
  }
}
