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

/** Whether this device should show an in-app notification for a message at `level`. */
export function shouldNotify(level: Level, opts: { mention: boolean; ping: boolean; dm: boolean }) {
  switch (level) {
    case "silent":
      return false;
    case "quiet":
      return opts.ping;
    case "engaged":
      return opts.mention || opts.dm || opts.ping;
    case "busy":
      return opts.ping;
  }
}

const MAIL_TTL_SECONDS = 7 * 24 * 3600;

/** What a mail says, sealed for its recipient (hearth.sealed): the router sees only ciphertext. */
export interface MailPayload {
  kind: "mention" | "dm" | "ping";
  channel: string;
  msgId: string;
  preview: string;
}

export async function notifyMentions(
  router: RouterConnection,
  identity: Identity,
  dids: string[],
  about: { channel: string; msgId: string; ping: boolean; dm?: boolean; text: string },
): Promise<void> {
  const urgency = urgencyFor({ ping: about.ping, dm: !!about.dm });
  const payload: MailPayload = {
    kind: about.dm ? "dm" : about.ping ? "ping" : "mention",
    channel: about.channel,
    msgId: about.msgId,
    preview: about.text.slice(0, 140),
  };
  const bytes = new TextEncoder().encode(JSON.stringify(payload));
  for (const did of dids) {
    const mailId = `${about.msgId}.${did.slice(-8)}`;
    const sealed = await seal({
      payload: bytes,
      sender: identity.did,
      senderSeed: identity.seed,
      recipient: did,
      msgId: mailId,
    });
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
