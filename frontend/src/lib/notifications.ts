// Notifications between people go through the router's mailbox (`mail`), so
// the recipient learns about a mention or a DM even when their app is closed.
// Until mail is sealed for the recipient's key (hearth.sealed), the payload
// says only that something happened: the router learns nothing of the chat.

import { mailFrame } from "./frame";
import type { RouterConnection } from "./router-connection";
import type { Level } from "./schema";

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

export function notifyMentions(
  router: RouterConnection,
  dids: string[],
  about: { channel: string; msgId: string; ping: boolean; dm?: boolean },
): void {
  const body = new TextEncoder().encode(
    JSON.stringify({ kind: about.dm ? "dm" : "mention" }),
  );
  const urgency = urgencyFor({ ping: about.ping, dm: !!about.dm });
  for (const did of dids) {
    router.send(mailFrame(did, `${about.msgId}.${did.slice(-8)}`, MAIL_TTL_SECONDS, urgency, body));
  }
}
