// Web Push: subscribe this browser with the router's VAPID key and register
// it for our DID, so mail and pings wake it when the app is closed. Needs a
// reachable push service (the browser vendor's), so it is opt-in.

import { base64urlDecode } from "./identity";
import type { ServiceAuth } from "./services";
import type { Level } from "./schema";

const NSID = "chat.hearth.v1.push.";

async function call(auth: ServiceAuth, method: string, body: unknown): Promise<unknown> {
  const res = await fetch(`${auth.httpBase("router")}/xrpc/${NSID}${method}`, {
    method: "POST",
    headers: {
      Authorization: `Bearer ${await auth.jwt("router", NSID + method)}`,
      "Content-Type": "application/json",
    },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method}: HTTP ${res.status}`);
  return res.json();
}

/** Asks permission, subscribes with the router's VAPID key and registers the device. */
export async function enablePush(auth: ServiceAuth, device: string, level: Level): Promise<void> {
  if (!("PushManager" in self)) throw new Error("this browser has no Web Push");
  if ((await Notification.requestPermission()) !== "granted") {
    throw new Error("notifications were not allowed");
  }
  const res = await fetch(`${auth.httpBase("router")}/xrpc/${NSID}vapidPublicKey`);
  if (!res.ok) throw new Error(`vapidPublicKey: HTTP ${res.status}`);
  const { publicKey } = (await res.json()) as { publicKey: string };
  const registration = await navigator.serviceWorker.ready;
  const subscription = await registration.pushManager.subscribe({
    userVisibleOnly: true,
    applicationServerKey: base64urlDecode(publicKey) as Uint8Array<ArrayBuffer>,
  });
  await call(auth, "register", { subscription: subscription.toJSON(), level, device });
}

/** Pushes for one channel's `notify` at `level`; needs `enablePush` first (else HTTP 404). */
export function subscribeDocument(auth: ServiceAuth, device: string, docId: string, level: Level) {
  return call(auth, "subscribeDocument", { device, docId, level });
}

export function unsubscribeDocument(auth: ServiceAuth, device: string, docId: string) {
  return call(auth, "unsubscribeDocument", { device, docId });
}

/** The level the router caps this device's mail pushes at. */
export function setDeviceLevel(auth: ServiceAuth, device: string, level: Level) {
  return call(auth, "setLevel", { device, level });
}

/**
 * Forgets this device at the router (its registration and every document
 * subscription go) and drops the browser's push subscription.
 */
export async function disablePush(auth: ServiceAuth, device: string): Promise<void> {
  await call(auth, "unregister", { device });
  const registration = await navigator.serviceWorker?.getRegistration();
  const subscription = await registration?.pushManager.getSubscription();
  await subscription?.unsubscribe();
}
