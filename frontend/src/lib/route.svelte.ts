// Hash routes: #/ , #/s/<spaceId>/<channelId>, #/dm/<did>, #/join/<spaceId>.

export type Route =
  | { name: "home" }
  | { name: "space"; spaceId: string; channelId: string | null }
  | { name: "dm"; did: string }
  | { name: "join"; spaceId: string };

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "s" && parts[1]) return { name: "space", spaceId: parts[1], channelId: parts[2] ?? null };
  if (parts[0] === "dm" && parts[1]) return { name: "dm", did: parts[1] };
  if (parts[0] === "join" && parts[1]) return { name: "join", spaceId: parts[1] };
  return { name: "home" };
}

class Router {
  current = $state<Route>(parseRoute(location.hash));
  constructor() {
    addEventListener("hashchange", () => (this.current = parseRoute(location.hash)));
  }
  go(hash: string) {
    location.hash = hash;
  }
}

export const route = new Router();
