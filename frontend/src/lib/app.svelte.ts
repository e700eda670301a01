// The running app: identity, the repo with its two network adapters, the
// documents the views show (as reactive snapshots), and the actions the views
// call. Views read state from here and never touch the repo themselves.

import {
  Automerge,
  Repo,
  type AutomergeUrl,
  type DocHandle,
  type DocumentId,
  type PeerId,
} from "@automerge/automerge-repo/slim";
import { IndexedDBStorageAdapter } from "@automerge/automerge-repo-storage-indexeddb";
import { BrowserWebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";
import { deviceSettings, type Identity } from "./identity";
import { loadIdentity, signOut as forgetAccount, startKeys } from "./account";
import { loadConfig, type Config } from "./config";
import { RouterConnection, type RouterState } from "./router-connection";
import { RouterNetworkAdapter, type PeerInfo } from "./router-adapter";
import { ServiceAuth } from "./services";
import * as S from "./schema";
import type { CatalogDoc, ChannelDoc, Level, SpaceDoc } from "./schema";
import {
  cappedLevel,
  deviceLevel,
  noticeUrgency,
  notifyMentions,
  openMail,
  parseUrgency,
  type PushUrgency,
} from "./notifications";
import { ackFrame, encodeFrame } from "./frame";
import { disablePush, enablePush, setDeviceLevel, subscribeDocument, unsubscribeDocument } from "./push";

type AnyDoc = CatalogDoc | SpaceDoc | ChannelDoc;

/** How long a new document waits for the syncserver before others hear of it. */
const STORE_WAIT_MS = 5000;
/** How long signing out waits for the router to forget this device's push registration. */
const SIGN_OUT_PUSH_WAIT_MS = 3000;
/** sessionStorage: the handle just signed out of, read once by the reloaded app. */
const SIGNED_OUT = "hearth-signed-out";

export const urlOf = (id: string) => `automerge:${id}` as AutomergeUrl;
export const idOf = (url: string) => url.replace(/^automerge:/, "") as DocumentId;

export interface Status {
  browserOnline: boolean;
  router: RouterState;
  sync: "off" | "connecting" | "open";
  peers: PeerInfo[];
}

export class HearthApp {
  identity!: Identity;
  repo!: Repo;
  config: Config = { services: {}, http: {} };
  router: RouterConnection | null = null;
  routerAdapter: RouterNetworkAdapter | null = null;
  private syncAdapter: BrowserWebSocketClientAdapter | null = null;
  private auth!: ServiceAuth;
  private catalogHandle!: DocHandle<CatalogDoc>;
  private handles = new Map<string, DocHandle<AnyDoc>>();
  private opening = new Map<string, Promise<DocHandle<AnyDoc> | null>>();
  /** Space ids being joined from a link: listened to before we have the doc. */
  private joining = new Set<string>();

  /** Snapshots of every open document, by URL; replaced (never mutated) on change. */
  docs = $state.raw<Record<string, AnyDoc>>({});
  catalogUrl = $state("");
  status = $state.raw<Status>({ browserOnline: true, router: "closed", sync: "off", peers: [] });
  /** Bumped whenever presence changes, so views recompute who is online. */
  presenceTick = $state(0);
  lastPush = $state("");
  /** The RFC 8030 urgency of the notice in `lastPush` ("" for one the service worker showed). */
  lastPushUrgency = $state<PushUrgency | "">("");
  /** Mails opened so far, and what became of the last one (for tests and the console). */
  mailSeen = $state(0);
  lastMail: { kind: string; level: Level; urgency: string; notice: PushUrgency | null } | null = null;
  /** The channel or DM on screen: mail about it needs no notice. */
  viewing = "";
  pushState = $state<"off" | "asking" | "on" | string>("off");
  /** The most this device's pushes may let through, whatever a channel says. */
  pushCap = $state<Level>("engaged");
  private deviceId = "";
  ready = $state(false);
  /** atproto: the PDS ended the session (refreshSession refused); the app says so. */
  sessionEnded = $state(false);
  /** A handle whose sign-in form is on screen over the app (after the session ended), or null. */
  signInAgain = $state<string | null>(null);
  /** The handle this tab just signed out of: the first-run screen shows again, once. */
  signedOutOf = $state("");
  /** A per-device choice, applied at start: never open direct connections. */
  readonly relayOnly = localStorage.getItem("hearth-relay-only") === "1";

  setRelayOnly(on: boolean): void {
    localStorage.setItem("hearth-relay-only", on ? "1" : "0");
    location.reload();
  }

  get did(): string {
    return this.identity.did;
  }

  get catalog(): CatalogDoc | undefined {
    return this.docs[this.catalogUrl] as CatalogDoc | undefined;
  }

  async start(): Promise<void> {
    this.identity = await loadIdentity();
    this.signedOutOf = sessionStorage.getItem(SIGNED_OUT) ?? "";
    sessionStorage.removeItem(SIGNED_OUT);
    this.identity.pds?.onEnded?.(() => this.sessionHasEnded());
    this.config = await loadConfig();
    this.auth = new ServiceAuth(this.identity, this.config);
    void startKeys(this.identity, this.config, this.auth);
    const peerId = `hearth-${this.identity.did.slice(-8)}-${crypto.randomUUID().slice(0, 8)}` as PeerId;

    const network = [];
    let deviceId = await deviceSettings.get<string>("device");
    if (!deviceId) {
      deviceId = `web-${crypto.randomUUID()}`;
      await deviceSettings.set("device", deviceId);
    }
    this.deviceId = deviceId;
    if ((await deviceSettings.get<boolean>("push")) === true) this.pushState = "on";
    this.pushCap = (await deviceSettings.get<Level>("push-level")) ?? "engaged";
    if (this.config.services.router) {
      this.router = new RouterConnection({
        url: this.config.services.router,
        did: this.identity.did,
        token: () => this.auth.routerToken(),
        deviceId,
      });
      this.router.on("message", (m) => {
        if (m.verb === "mail") void this.onMail(m.from, m.msgId, m.urgency, m.body);
      });
      this.routerAdapter = new RouterNetworkAdapter({
        transport: this.router,
        // Relay only: no WebRTC, so peers never learn this device's addresses.
        rtc: this.relayOnly ? null : undefined,
      });
      this.routerAdapter.onChange(() => this.refreshStatus(true));
      this.routerAdapter.onApp((from, payload) => void this.onAppMessage(from, payload));
      this.router.on("state", () => this.refreshStatus(false));
      network.push(this.routerAdapter);
    }
    this.repo = new Repo({
      peerId,
      storage: new IndexedDBStorageAdapter("hearth-docs"),
      // Chat changes are few and small: store each at once, so closing or
      // reloading the tab right after typing loses nothing.
      saveDebounceRate: 0,
      network,
      shareConfig: {
        announce: async (peer, docId) => !!docId && this.mayAnnounce(peer, docId),
        access: async (peer, docId) => !!docId && this.mayAccess(peer, docId),
      },
    });

    await this.openCatalog();
    if (navigator.onLine && !this.sessionEnded) {
      this.router?.start();
      void this.connectSyncserver();
    }

    // Offline means offline: no half-alive sockets delivering behind the indicator.
    const onlineChanged = () => {
      if (navigator.onLine) {
        if (this.sessionEnded) return this.refreshStatus(false); // nothing to connect as until a new sign-in
        this.router?.start();
        if (!this.syncAdapter) void this.connectSyncserver();
      } else {
        this.router?.stop();
        this.disconnectSyncserver();
      }
      this.refreshStatus(false);
    };
    addEventListener("pagehide", () => void this.repo.flush());
    addEventListener("online", onlineChanged);
    addEventListener("offline", onlineChanged);
    this.refreshStatus(false);
    this.ready = true;
  }

  // --- atproto session -----------------------------------------------------

  /** The PDS ended the session: stop trying to connect and show the banner. */
  private sessionHasEnded(): void {
    if (this.sessionEnded) return;
    console.info("atproto session ended by the PDS: sign in again");
    this.sessionEnded = true;
    this.router?.stop();
    this.disconnectSyncserver();
    this.refreshStatus(false);
  }

  /**
   * atproto only: signs this device out of the account. Push for this device
   * is turned off at the router (best effort), the router and syncserver
   * connections close, the stored PDS session and the keyserver's keys are
   * deleted from IndexedDB, and the app reloads on the first-run screen with
   * the device's did:key. The account's documents stay in this browser's
   * storage; signing in again finds them.
   */
  async signOut(): Promise<void> {
    if (!this.identity.pds) return; // a did:key has nothing to sign out of
    if (this.pushState === "on") {
      const off = this.disablePush().catch(() => {});
      await Promise.race([off, new Promise((r) => setTimeout(r, SIGN_OUT_PUSH_WAIT_MS))]);
    }
    this.sessionEnded = true; // no reconnecting meanwhile
    this.router?.stop();
    this.disconnectSyncserver();
    await this.repo.flush();
    await forgetAccount();
    sessionStorage.setItem(SIGNED_OUT, this.identity.handle ?? this.did);
    location.reload();
  }

  // --- documents ----------------------------------------------------------

  private async openCatalog(): Promise<void> {
    // One catalog per identity: an atproto account signed in on this device has its own.
    const key = this.did.startsWith("did:key:") ? "catalog" : `catalog:${this.did}`;
    const saved = await deviceSettings.get<string>(key);
    let handle: DocHandle<CatalogDoc> | null = null;
    if (saved) {
      // Set first: following the catalog's references (spaces, DMs, router
      // interests) happens as soon as it loads.
      this.catalogUrl = saved;
      handle = (await this.open(saved)) as DocHandle<CatalogDoc> | null;
    }
    if (!handle) {
      handle = this.createDoc<CatalogDoc>((d) => S.initCatalog(d, this.did));
      await deviceSettings.set(key, handle.url);
    }
    this.catalogHandle = handle;
    this.catalogUrl = handle.url;
    this.updateInterests();
  }

  /** True while a new document is being made and does not yet say whose it is. */
  private creating = false;

  /**
   * Creates a document and fills it in. The repo asks whom to announce a new
   * document to while creating it, before its content says who may have it:
   * until then, only the syncserver hears of it; the share rules are
   * re-checked as soon as it is tracked.
   */
  private createDoc<T extends AnyDoc>(init: (d: T) => void): DocHandle<T> {
    this.creating = true;
    try {
      const handle = this.repo.create<T>();
      handle.change(init);
      this.track(handle as unknown as DocHandle<AnyDoc>);
      return handle;
    } finally {
      this.creating = false;
    }
  }

  /** DIDs that may hold documents we are still fetching (a DM, a space's channels). */
  private expectedAudience = new Map<string, Set<string>>();

  /**
   * Opens a document (from storage or peers) and keeps its snapshot in `docs`.
   * With `audience`, only those people (and the syncserver) are asked for it,
   * and so only they are sent it when it arrives.
   */
  open(url: string, audience?: Iterable<string>): Promise<DocHandle<AnyDoc> | null> {
    if (audience && !this.docs[url]) this.expectedAudience.set(url, new Set(audience));
    const known = this.handles.get(url);
    if (known) return Promise.resolve(known);
    let pending = this.opening.get(url);
    if (!pending) {
      pending = (async () => {
        try {
          const handle = await this.repo.find<AnyDoc>(url as AutomergeUrl, {
            allowableStates: ["ready", "unavailable"],
          });
          // Not found anywhere yet: keep waiting, a peer may bring it later.
          await handle.whenReady(["ready"]);
          this.track(handle);
          return handle;
        } catch (e) {
          console.warn("cannot open", url, e);
          this.opening.delete(url);
          return null;
        }
      })();
      this.opening.set(url, pending);
    }
    return pending;
  }

  private track(handle: DocHandle<AnyDoc>): void {
    if (this.handles.has(handle.url)) return;
    this.handles.set(handle.url, handle);
    this.expectedAudience.delete(handle.url);
    const update = () => {
      const doc = handle.doc();
      if (!doc) return;
      const first = !this.docs[handle.url];
      this.docs = { ...this.docs, [handle.url]: doc };
      this.followReferences(doc);
      // Now that we know who it belongs to, stop syncing it with anyone else.
      if (first) void this.repo.shareConfigChanged();
    };
    handle.on("change", update);
    update();
  }

  /** Opens what a document points to (spaces -> channels) and updates router interests. */
  private followReferences(doc: AnyDoc): void {
    if (doc.type === "hearth.catalog") {
      for (const url of Object.keys(doc.spaces ?? {})) void this.open(url);
      for (const url of Object.values(doc.dms ?? {})) void this.open(url);
      this.updateInterests();
      this.schedulePushSync();
    } else if (doc.type === "hearth.space") {
      const members = S.activeMembers(doc).map(([did]) => did);
      for (const ch of doc.channels ?? []) void this.open(ch.url, members);
      this.updateInterests();
      this.maintainAccess();
      this.schedulePushSync();
    }
  }

  private updateInterests(): void {
    const c = this.catalog;
    // Channels too: the router lets only a document's listeners `notify` its
    // subscribers (a deliberate ping to a channel with nobody named).
    const channels = Object.keys(c?.spaces ?? {}).flatMap((url) =>
      (this.space(url)?.channels ?? []).map((ch) => idOf(ch.url)),
    );
    const ids = [
      ...Object.keys(c?.spaces ?? {}).map(idOf),
      ...channels,
      ...Object.values(c?.dms ?? {}).map(idOf),
      ...this.joining,
    ];
    this.router?.listen(ids);
  }

  space(url: string): SpaceDoc | undefined {
    const d = this.docs[url];
    return d?.type === "hearth.space" ? d : undefined;
  }

  channel(url: string): ChannelDoc | undefined {
    const d = this.docs[url];
    return d && (d.type === "hearth.channel" || d.type === "hearth.dm") ? d : undefined;
  }

  private handle<T extends AnyDoc>(url: string): DocHandle<T> {
    const h = this.handles.get(url);
    if (!h) throw new Error(`document not open: ${url}`);
    return h as unknown as DocHandle<T>;
  }

  // --- sharing rules --------------------------------------------------------

  /** The DID behind a router peer, or null for the syncserver (or unknown). */
  private didOfPeer(peer: PeerId): string | null {
    if (this.syncAdapter?.remotePeerId === peer) return null;
    return this.routerAdapter?.peers().find((p) => p.peerId === peer)?.did ?? "";
  }

  /** DIDs allowed to hold a document we have open; null when anyone with its id may. */
  private audience(url: string): Set<string> | null {
    const doc = this.docs[url];
    if (!doc) return this.expectedAudience.get(url) ?? null;
    if (doc.type === "hearth.catalog") return new Set([this.did]);
    if (doc.type === "hearth.dm") return new Set(doc.members ?? []);
    const space = doc.type === "hearth.space" ? doc : this.space(doc.space);
    if (!space) return null;
    return new Set(S.activeMembers(space).map(([did]) => did));
  }

  /** Documents we made and do not let peers have until the syncserver stored them. */
  private unpublished = new Set<string>();

  /** For a document we do not have: may `did` be asked for it (and answer)? */
  private mayFetchFrom(url: string, did: string): boolean {
    if (!this.opening.has(url)) return false; // never asked for: refuse what we did not want
    return this.expectedAudience.get(url)?.has(did) ?? true;
  }

  private mayAnnounce(peer: PeerId, docId: DocumentId): boolean {
    const did = this.didOfPeer(peer);
    if (did === null) return true; // the syncserver stores everything we have
    const url = urlOf(docId);
    if (this.unpublished.has(url)) return false;
    if (!this.docs[url]) return !this.creating && this.mayFetchFrom(url, did);
    const audience = this.audience(url);
    return audience === null || audience.has(did);
  }

  private mayAccess(peer: PeerId, docId: DocumentId): boolean {
    const did = this.didOfPeer(peer);
    if (did === null) return true;
    const url = urlOf(docId);
    const doc = this.docs[url];
    if (!doc) return this.mayFetchFrom(url, did);
    if (doc.type === "hearth.catalog" || doc.type === "hearth.dm") {
      return this.audience(url)!.has(did);
    }
    return true; // spaces and channels: the link is the invitation
  }

  // --- syncserver -----------------------------------------------------------

  private syncGeneration = 0;

  private disconnectSyncserver(): void {
    this.syncGeneration++;
    if (this.syncAdapter) this.repo.networkSubsystem.removeNetworkAdapter(this.syncAdapter);
    this.syncAdapter = null;
    this.status = { ...this.status, sync: "off" };
  }

  private async connectSyncserver(): Promise<void> {
    const base = this.config.services.syncserver;
    if (!base) return;
    const generation = ++this.syncGeneration;
    this.status = { ...this.status, sync: "connecting" };
    for (let attempt = 0; generation === this.syncGeneration; attempt++) {
      try {
        const token = await this.auth.syncToken();
        if (generation !== this.syncGeneration) return;
        const url = `${base.replace(/^http/, "ws").replace(/\/+$/, "")}/?token=${encodeURIComponent(token)}`;
        const adapter = new BrowserWebSocketClientAdapter(url, 5000);
        this.syncAdapter = adapter;
        adapter.on("peer-candidate", () => {
          if (this.syncAdapter === adapter) this.status = { ...this.status, sync: "open" };
        });
        adapter.on("peer-disconnected", () => {
          if (this.syncAdapter === adapter) this.status = { ...this.status, sync: "connecting" };
        });
        this.repo.networkSubsystem.addNetworkAdapter(adapter);
        return;
      } catch (e) {
        console.info("syncserver not reachable yet:", String(e));
        await new Promise((r) => setTimeout(r, Math.min(30_000, 1000 * 2 ** attempt)));
      }
    }
  }

  /** Owners keep the syncserver's access list in step with the space's members. */
  private maintainAccess(): void {
    for (const [url, doc] of Object.entries(this.docs)) {
      if (doc.type !== "hearth.space" || !S.isMember(doc, this.did)) continue;
      const members = S.activeMembers(doc).map(([did]) => did);
      const mine = [
        ...(doc.createdBy === this.did ? [url] : []),
        ...doc.channels.filter((c) => c.createdBy === this.did).map((c) => c.url),
      ];
      for (const target of mine) {
        this.ensureAccess(target, { public: true, readers: members, writers: members });
      }
    }
  }

  private accessWanted = new Map<string, { key: string; done: Promise<boolean> }>();

  /**
   * Sets a document's access on the syncserver once it has stored the
   * document (404 until then: retried); only owners may (403: given up).
   * Resolves true once the access is in force.
   */
  private ensureAccess(
    url: string,
    access: { public: boolean; readers: string[]; writers: string[] },
  ): Promise<boolean> {
    if (!this.config.services.syncserver) return Promise.resolve(false);
    const key = JSON.stringify(access);
    const known = this.accessWanted.get(url);
    if (known?.key === key) return known.done;
    const entry = { key, done: Promise.resolve(false) };
    this.accessWanted.set(url, entry);
    entry.done = (async () => {
      for (let attempt = 0; attempt < 10 && this.accessWanted.get(url) === entry; attempt++) {
        const status = await this.auth.setAccess(idOf(url), access);
        if (status === 200) return true;
        if (status === 403) return false;
        await new Promise((r) => setTimeout(r, Math.min(10_000, 100 * 2 ** attempt)));
      }
      return false;
    })();
    return entry.done;
  }

  /**
   * Runs `publish` (which tells others about a new document) once the
   * syncserver holds the document under our ownership, so nobody else
   * uploads it first and becomes its owner; at once when there is no
   * syncserver session, after `STORE_WAIT_MS` at the latest.
   */
  private async publishAfterStored(
    url: string,
    access: { public: boolean; readers: string[]; writers: string[] },
    publish: () => void,
  ): Promise<void> {
    const stored = this.ensureAccess(url, access);
    if (this.status.sync === "open") {
      this.unpublished.add(url);
      await Promise.race([stored, new Promise((r) => setTimeout(r, STORE_WAIT_MS))]);
      this.unpublished.delete(url);
      void this.repo.shareConfigChanged();
    }
    publish();
  }

  // --- status -------------------------------------------------------------

  private refreshStatus(presence: boolean): void {
    this.status = {
      browserOnline: navigator.onLine,
      router: this.router?.state ?? "closed",
      sync: this.status.sync,
      peers: this.routerAdapter?.peers() ?? [],
    };
    if (presence) this.presenceTick++;
  }

  /** DIDs with a live router connection on this space (ourselves included when connected). */
  onlineIn(spaceUrl: string): Set<string> {
    void this.presenceTick;
    const online = this.routerAdapter?.onlineDids(idOf(spaceUrl)) ?? new Set<string>();
    if (this.status.router === "open") online.add(this.did);
    return online;
  }

  peerPath(did: string): string {
    const links = this.status.peers.filter((p) => p.did === did);
    if (links.some((p) => p.path === "direct")) return "direct";
    if (links.some((p) => p.path === "relay")) return "relay";
    return links.length ? "connecting" : "";
  }

  // --- actions --------------------------------------------------------------

  setDisplayName(name: string): void {
    this.catalogHandle.change((d) => S.setDisplayName(d, name));
    for (const [url, doc] of Object.entries(this.docs)) {
      if (doc.type === "hearth.space" && S.isMember(doc, this.did)) {
        this.handle<SpaceDoc>(url).change((d) => S.joinSpace(d, this.did, name.trim(), Date.now()));
      }
    }
  }

  createSpace(name: string): string {
    const now = Date.now();
    const space = this.createDoc<SpaceDoc>((d) =>
      S.initSpace(d, { name, creator: this.did, creatorName: this.catalog?.displayName ?? "", now }),
    );
    this.catalogHandle.change((d) => S.rememberSpace(d, space.url, now));
    this.createChannel(space.url, "general");
    return space.url;
  }

  createChannel(spaceUrl: string, name: string): string {
    const channel = this.createDoc<ChannelDoc>((d) => S.initChannel(d, { name, spaceUrl }));
    const space = this.space(spaceUrl);
    const members = space ? S.activeMembers(space).map(([did]) => did) : [this.did];
    const createdAt = Date.now();
    void this.publishAfterStored(channel.url, { public: true, readers: members, writers: members }, () =>
      this.handle<SpaceDoc>(spaceUrl).change((d) =>
        S.addChannel(d, { url: channel.url, name, createdAt, createdBy: this.did }),
      ),
    );
    return channel.url;
  }

  inviteLink(spaceUrl: string): string {
    return `${location.origin}/#/join/${idOf(spaceUrl)}`;
  }

  /** Joins a space from its invite id: waits until some peer brings the document. */
  async joinSpace(spaceId: string): Promise<string | null> {
    const url = urlOf(spaceId);
    this.joining.add(spaceId);
    this.updateInterests();
    // Keep listening to the space until the catalog holds it: an interest set
    // without it, even for a moment, would make the router tell the others we
    // left, and they would drop the link carrying our join.
    const done = (result: string | null): string | null => {
      this.joining.delete(spaceId);
      this.updateInterests();
      return result;
    };
    const handle = await this.open(url);
    if (!handle || handle.doc()?.type !== "hearth.space") return done(null);
    const ok = { value: false };
    (handle as DocHandle<SpaceDoc>).change((d) => {
      ok.value = S.joinSpace(d, this.did, this.catalog?.displayName ?? "", Date.now());
    });
    if (!ok.value) return done(null);
    this.catalogHandle.change((d) => S.rememberSpace(d, url, Date.now()));
    return done(url);
  }

  leaveSpace(spaceUrl: string): void {
    this.handle<SpaceDoc>(spaceUrl).change((d) => S.leaveSpace(d, this.did, Date.now()));
    this.catalogHandle.change((d) => S.forgetSpace(d, spaceUrl));
  }

  post(channelUrl: string, text: string, opts: { replyTo?: string; ping?: boolean } = {}): void {
    const body = text.trim();
    if (!body) return;
    const ch = this.channel(channelUrl);
    const space = ch?.space ? this.space(ch.space) : undefined;
    const names: [string, string][] = space
      ? S.activeMembers(space).map(([did, m]) => [did, m.name])
      : [];
    const mentions = S.findMentions(body, names).filter((d) => d !== this.did);
    const id = S.newMessageId();
    this.handle<ChannelDoc>(channelUrl).change((d) =>
      S.postMessage(d, { id, author: this.did, text: body, now: Date.now(), mentions, ...opts }),
    );
    this.markRead(channelUrl);
    const targets = ch?.type === "hearth.dm" ? (ch.members ?? []).filter((d) => d !== this.did) : mentions;
    if (opts.ping && !targets.length && ch?.type === "hearth.channel") {
      // A deliberate ping with nobody named: wake the channel's subscribers.
      this.router?.send(encodeFrame(["notify", idOf(channelUrl), "ping"]));
    }
    if (targets.length && this.router) {
      void notifyMentions(this.router, this.identity, targets, {
        channel: channelUrl,
        space: ch?.space ?? "",
        msgId: id,
        ping: !!opts.ping,
        dm: ch?.type === "hearth.dm",
        text: body,
      });
    }
  }

  edit(channelUrl: string, id: string, text: string): void {
    this.handle<ChannelDoc>(channelUrl).change((d) => S.editMessage(d, id, this.did, text, Date.now()));
  }

  remove(channelUrl: string, id: string): void {
    this.handle<ChannelDoc>(channelUrl).change((d) => S.deleteMessage(d, id, this.did, Date.now()));
  }

  markRead(channelUrl: string): void {
    const ch = this.channel(channelUrl);
    if (!ch) return;
    const heads = Automerge.getHeads(ch);
    if (S.isReadAt(this.catalog?.reads?.[channelUrl], heads)) return;
    this.catalogHandle.change((d) => S.markRead(d, channelUrl, heads));
  }

  unread(channelUrl: string): number {
    const ch = this.channel(channelUrl);
    if (!ch) return 0;
    return S.unreadCount(ch, this.catalog?.reads?.[channelUrl], this.did);
  }

  setLevel(url: string, level: Level): void {
    // The catalog's change schedules a push sync (followReferences).
    this.catalogHandle.change((d) => S.setLevel(d, url, level));
  }

  /** The level in force for a channel or DM: its own, else its space's, else "engaged". */
  levelOf(channelUrl: string, claimedSpace = ""): Level {
    const c = this.catalog;
    if (!c) return "engaged";
    // What we know of the channel beats what a mail claims about it.
    const space =
      this.channel(channelUrl)?.space ??
      Object.keys(c.spaces ?? {}).find((u) => this.space(u)?.channels.some((ch) => ch.url === channelUrl)) ??
      claimedSpace;
    return S.levelFor(c, channelUrl, space);
  }

  /** Opt in to Web Push on this device (needs the browser's push service online). */
  async enablePush(): Promise<void> {
    this.pushState = "asking";
    try {
      const level = this.wantedPush().device;
      await enablePush(this.auth, this.deviceId, level);
      await deviceSettings.set("push", true);
      this.pushSent = { device: level, docs: new Map() };
      this.pushState = "on";
      this.schedulePushSync();
    } catch (e) {
      this.pushState = `failed: ${e instanceof Error ? e.message : e}`;
    }
  }

  /** Opt out: the router forgets this device and every subscription it had. */
  async disablePush(): Promise<void> {
    try {
      await disablePush(this.auth, this.deviceId);
      await deviceSettings.set("push", false);
      this.pushSent = { device: null, docs: new Map() };
      this.pushState = "off";
    } catch (e) {
      this.pushState = `failed: ${e instanceof Error ? e.message : e}`;
    }
  }

  /** Caps every push to this device (its registration and each channel's subscription). */
  async setPushCap(level: Level): Promise<void> {
    this.pushCap = level;
    await deviceSettings.set("push-level", level);
    this.schedulePushSync();
  }

  /** What the router was last told, so a sync sends only what changed. */
  private pushSent: { device: Level | null; docs: Map<string, Level> } = { device: null, docs: new Map() };
  private pushSyncing: Promise<void> | null = null;
  private pushAgain = false;

  /**
   * The router's side of our levels: every channel of every space is
   * subscribed at its level in force (a space's level reaches each channel
   * without its own), capped by this device's; the device registration, which
   * mail pushes obey, carries the most permissive of all those levels.
   */
  private wantedPush(): { device: Level; docs: Map<string, Level> } {
    const docs = new Map<string, Level>();
    const levels: Level[] = [];
    const c = this.catalog;
    for (const spaceUrl of Object.keys(c?.spaces ?? {})) {
      for (const ch of this.space(spaceUrl)?.channels ?? []) {
        const level = c ? S.levelFor(c, ch.url, spaceUrl) : "engaged";
        levels.push(level);
        docs.set(idOf(ch.url), cappedLevel(level, this.pushCap));
      }
    }
    for (const url of Object.values(c?.dms ?? {})) levels.push(this.levelOf(url));
    return { device: deviceLevel(levels, this.pushCap), docs };
  }

  /** Brings the router's subscriptions in step with our levels, soon (batched). */
  private schedulePushSync(): void {
    if (this.pushState !== "on" || !this.auth) return;
    if (this.pushSyncing) {
      this.pushAgain = true;
      return;
    }
    this.pushSyncing = (async () => {
      await new Promise((r) => setTimeout(r, 50)); // let a burst of changes land first
      do {
        this.pushAgain = false;
        await this.syncPush().catch((e) => this.pushSyncFailed(e));
      } while (this.pushAgain && this.pushState === "on");
      this.pushSyncing = null;
    })();
  }

  /** A 404: the router no longer has this device (dropped when its push service said gone). */
  private pushSyncFailed(e: unknown): void {
    if (this.pushState !== "on") return; // turned off meanwhile: nothing to report
    if (e instanceof Error && / HTTP 404$/.test(e.message)) {
      void deviceSettings.set("push", false);
      this.pushSent = { device: null, docs: new Map() };
      this.pushState = "failed: the router no longer knows this device; enable push again";
    } else {
      console.warn("push subscriptions:", e);
    }
  }

  private async syncPush(): Promise<void> {
    if (this.pushState !== "on") return;
    const want = this.wantedPush();
    const sent = this.pushSent;
    if (sent.device !== want.device) {
      await setDeviceLevel(this.auth, this.deviceId, want.device);
      sent.device = want.device;
    }
    for (const [doc, level] of want.docs) {
      if (sent.docs.get(doc) === level) continue;
      await subscribeDocument(this.auth, this.deviceId, doc, level);
      sent.docs.set(doc, level);
    }
    for (const doc of [...sent.docs.keys()]) {
      if (want.docs.has(doc)) continue;
      await unsubscribeDocument(this.auth, this.deviceId, doc);
      sent.docs.delete(doc);
    }
  }

  /** The DM with `did`, created (and announced to them) on first use. */
  openDm(did: string): string {
    const known = this.catalog?.dms?.[did];
    if (known) return known;
    const dm = this.createDoc<ChannelDoc>((d) => S.initDm(d, this.did, did));
    this.catalogHandle.change((d) => S.rememberDm(d, did, dm.url));
    const access = { public: false, readers: [this.did, did], writers: [this.did, did] };
    void this.publishAfterStored(dm.url, access, () => this.announceDm(did, dm.url));
    return dm.url;
  }

  private announceDm(did: string, url: string): void {
    const sent = this.routerAdapter?.sendApp(did, { kind: "dm", url }) ?? 0;
    if (!sent) {
      // Not connected to them now: try again whenever the peers change.
      const off = this.routerAdapter?.onChange(() => {
        if (this.routerAdapter!.sendApp(did, { kind: "dm", url })) off?.();
      });
    }
  }

  private async onAppMessage(from: string, payload: unknown): Promise<void> {
    const p = payload as { kind?: string; url?: string };
    if (p?.kind !== "dm" || typeof p.url !== "string" || !p.url.startsWith("automerge:")) return;
    if (this.catalog?.dms?.[from]) return;
    const handle = await this.open(p.url, [from, this.did]);
    const doc = handle?.doc() as ChannelDoc | undefined;
    // Only accept a DM that really is between the sender and us.
    if (doc?.type !== "hearth.dm" || !doc.members?.includes(from) || !doc.members.includes(this.did)) {
      return;
    }
    this.catalogHandle.change((d) => S.rememberDm(d, from, p.url!));
  }

  /**
   * Mail from the router's mailbox: acknowledged, opened, and shown as a
   * notice when the level in force for its channel lets its urgency through
   * (the router's anti-urgency rule, so the app and a push agree).
   */
  private async onMail(from: string, msgId: string, urgency: string, body: Uint8Array): Promise<void> {
    this.router?.send(ackFrame(msgId));
    const mail = await openMail(this.identity, from, msgId, body);
    if (!mail) return; // not sealed for us by its claimed sender: ignore it
    const level = this.levelOf(mail.channel, typeof mail.space === "string" ? mail.space : "");
    const notice = noticeUrgency(level, parseUrgency(urgency));
    this.lastMail = { kind: mail.kind, level, urgency, notice };
    this.mailSeen++;
    if (notice === null) return;
    if (mail.channel === this.viewing && document.visibilityState === "visible") return;
    const what = { dm: "sent you a message", ping: "pinged you", mention: "mentioned you" }[mail.kind];
    this.lastPush = `${this.nameOf(from)}: ${what ?? "wants your attention"}`;
    this.lastPushUrgency = notice;
  }

  nameOf(did: string): string {
    for (const doc of Object.values(this.docs)) {
      if (doc.type === "hearth.space" && doc.members?.[did]?.name) return doc.members[did].name;
    }
    return did.slice(0, 16) + "…" + did.slice(-4);
  }
}

export const app = new HearthApp();
