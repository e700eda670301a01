// Hearth service worker: keeps the app shell for offline use and shows pushes.
// The build fills in PRECACHE (every emitted file) and VERSION.
/* global self, caches, clients */

const VERSION = "__HEARTH_VERSION__";
const PRECACHE = __HEARTH_PRECACHE__;
const CACHE = `hearth-shell-${VERSION}`;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(["/", ...PRECACHE]))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) =>
        Promise.all(keys.filter((k) => k.startsWith("hearth-") && k !== CACHE).map((k) => caches.delete(k))),
      )
      .then(() => self.clients.claim()),
  );
});

async function networkFirst(request, fallbackKey) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(fallbackKey ?? request, response.clone());
    return response;
  } catch (err) {
    const cached = await cache.match(fallbackKey ?? request, { ignoreVary: true });
    if (cached) return cached;
    throw err;
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    // Every route is the single-page app: fresh when online, the shell when not.
    event.respondWith(networkFirst(request, "/"));
  } else if (url.pathname === "/config.json") {
    event.respondWith(networkFirst(request));
  } else {
    // Hashed build files never change; ignoreVary: module scripts are requested with an Origin header.
    event.respondWith(caches.match(request, { ignoreVary: true }).then((hit) => hit ?? fetch(request)));
  }
});

// What the router pushes: a sealed mail (binary; opened by the app once it
// connects and fetches the mail), or a JSON hint `{"hearth": "mail" | "notify",
// ...}` when the mail is too large or a channel was pinged. Other senders may
// push `{"title", "body"}`.
function describePush(data) {
  if (!data) return { title: "Hearth", body: "Something new is waiting" };
  let text = null;
  try {
    text = data.text();
  } catch {
    text = null;
  }
  if (text && text.startsWith("{")) {
    try {
      const json = JSON.parse(text);
      if (json.hearth === "notify") return { title: "Hearth", body: "You were pinged in a channel", tag: json.doc };
      if (json.hearth) return { title: "Hearth", body: "A message is waiting for you", tag: json.from };
      if (json.title || json.body) return { title: json.title || "Hearth", body: json.body || "", tag: json.tag, url: json.url };
    } catch {
      // not JSON after all: a sealed mail
    }
  }
  return { title: "Hearth", body: "Someone wrote to you", tag: "hearth-mail" };
}

self.addEventListener("push", (event) => {
  const push = describePush(event.data);
  const title = push.title;
  const options = {
    body: push.body,
    tag: push.tag || "hearth",
    icon: "/icons/icon-192.png",
    badge: "/icons/icon-192.png",
    data: { url: push.url || "/" },
  };
  event.waitUntil(
    self.registration.showNotification(title, options).then(() =>
      clients.matchAll({ type: "window" }).then((list) => {
        for (const c of list) c.postMessage({ type: "hearth-push", title, body: options.body });
      }),
    ),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = (event.notification.data && event.notification.data.url) || "/";
  event.waitUntil(
    clients.matchAll({ type: "window" }).then((list) => {
      for (const c of list) if ("focus" in c) return c.focus();
      return clients.openWindow(target);
    }),
  );
});
