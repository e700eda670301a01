// Where the services are: `/config.json`, served by `hearth up` (and kept by
// the service worker, so the app still knows when offline).
//
// `services` are the services' own base URLs (WebSockets go there; their
// did:web names derive from them); `http` are same-origin paths the frontend
// server passes through to them, for the browser's XRPC calls.

export type ServiceName = "resolver" | "keyserver" | "router" | "syncserver";
export type ServiceUrls = Partial<Record<ServiceName, string>>;

export interface Config {
  services: ServiceUrls;
  http: ServiceUrls;
}

const KEY = "hearth-config";

function normalise(body: unknown): Config {
  const b = (body ?? {}) as Partial<Config>;
  const http: ServiceUrls = {};
  for (const [name, path] of Object.entries(b.http ?? {})) {
    http[name as ServiceName] = new URL(path as string, location.origin).href.replace(/\/+$/, "");
  }
  return { services: b.services ?? {}, http };
}

export async function loadConfig(): Promise<Config> {
  try {
    const res = await fetch("/config.json", { cache: "no-store" });
    if (res.ok) {
      const body = await res.json();
      localStorage.setItem(KEY, JSON.stringify(body));
      return normalise(body);
    }
  } catch {
    // offline: fall through to the last known configuration
  }
  try {
    return normalise(JSON.parse(localStorage.getItem(KEY) ?? "{}"));
  } catch {
    return normalise({});
  }
}
