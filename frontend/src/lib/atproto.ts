// atproto sign-in with an app password: resolve the handle through our
// resolver, find the account's PDS in its DID document, open a session there
// (com.atproto.server.createSession), and from then on ask the PDS for a
// service-auth JWT (com.atproto.server.getServiceAuth) for every call to our
// services. The password is used for createSession only and never stored or
// logged; the session's tokens are kept and refreshed (refreshSession).
// OAuth is not supported (yet).

import { base64urlDecode, type ServiceJwtSource } from "./identity";

type Fetch = typeof fetch;

/** A sign-in failure with a message meant for the person signing in. */
export class SignInError extends Error {
  constructor(
    message: string,
    readonly code:
      | "bad-handle"
      | "unknown-handle"
      | "handle-invalid"
      | "resolver"
      | "no-pds"
      | "pds-unreachable"
      | "wrong-password"
      | "pds-error"
      | "session-expired",
  ) {
    super(message);
    this.name = "SignInError";
  }
}

export interface ResolvedAccount {
  did: string;
  handle: string;
  pds: string;
}

export interface StoredSession {
  did: string;
  handle: string;
  pds: string;
  accessJwt: string;
  refreshJwt: string;
}

const HANDLE = /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** What a person typed ("@alice.example.com ", "Alice.Example.com") as a handle. */
export function normaliseHandle(input: string): string {
  return input.trim().replace(/^@/, "").toLowerCase();
}

/** The `#atproto_pds` service endpoint of a DID document, or null. */
export function pdsEndpoint(didDoc: unknown): string | null {
  const doc = (didDoc ?? {}) as { id?: unknown; service?: unknown };
  if (!Array.isArray(doc.service)) return null;
  for (const s of doc.service as { id?: unknown; type?: unknown; serviceEndpoint?: unknown }[]) {
    const id = typeof s?.id === "string" ? s.id : "";
    if (id !== "#atproto_pds" && id !== `${doc.id}#atproto_pds`) continue;
    if (typeof s.serviceEndpoint !== "string") return null;
    try {
      const url = new URL(s.serviceEndpoint);
      if (url.protocol !== "https:" && url.protocol !== "http:") return null;
      return url.href.replace(/\/+$/, "");
    } catch {
      return null;
    }
  }
  return null;
}

async function errorOf(res: Response): Promise<{ error: string; message: string }> {
  try {
    const body = (await res.json()) as { error?: unknown; message?: unknown };
    return {
      error: typeof body.error === "string" ? body.error : "",
      message: typeof body.message === "string" ? body.message : "",
    };
  } catch {
    return { error: "", message: "" };
  }
}

/** Handle -> DID, DID document (two-way checked) and PDS, through our resolver service. */
export async function resolveAccount(
  resolverBase: string,
  input: string,
  fetchFn: Fetch = (...a) => fetch(...a),
): Promise<ResolvedAccount> {
  const handle = normaliseHandle(input);
  if (!HANDLE.test(handle) || handle.length > 253) {
    throw new SignInError(`"${input.trim()}" is not a handle (like alice.bsky.social)`, "bad-handle");
  }
  let res: Response;
  try {
    res = await fetchFn(
      `${resolverBase}/xrpc/com.atproto.identity.resolveIdentity?identifier=${encodeURIComponent(handle)}`,
    );
  } catch {
    throw new SignInError("Cannot reach Hearth's resolver: are you online?", "resolver");
  }
  if (res.status === 404 || res.status === 400) {
    throw new SignInError(`No atproto account has the handle ${handle}.`, "unknown-handle");
  }
  if (!res.ok) {
    const e = await errorOf(res);
    throw new SignInError(`Could not look up ${handle} right now${e.message ? ` (${e.message})` : ""}.`, "resolver");
  }
  const body = (await res.json()) as { did?: unknown; handle?: unknown; didDoc?: unknown };
  if (typeof body.did !== "string") throw new SignInError("The resolver gave no DID.", "resolver");
  if (body.handle === "handle.invalid") {
    throw new SignInError(
      `The handle ${handle} is not confirmed by its account's DID document (handle.invalid); fix the handle on your PDS, or try again later.`,
      "handle-invalid",
    );
  }
  const pds = pdsEndpoint(body.didDoc);
  if (!pds) throw new SignInError(`The account ${body.did} names no PDS (#atproto_pds).`, "no-pds");
  return { did: body.did, handle, pds };
}

/** com.atproto.server.createSession with an app password. The password goes nowhere else. */
export async function createSession(
  account: ResolvedAccount,
  password: string,
  fetchFn: Fetch = (...a) => fetch(...a),
): Promise<StoredSession> {
  let res: Response;
  try {
    res = await fetchFn(`${account.pds}/xrpc/com.atproto.server.createSession`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ identifier: account.handle, password }),
    });
  } catch {
    throw new SignInError(`Cannot reach your PDS at ${account.pds}.`, "pds-unreachable");
  }
  if (res.status === 401) {
    throw new SignInError("Wrong handle or app password.", "wrong-password");
  }
  if (!res.ok) {
    const e = await errorOf(res);
    if (e.error === "AuthFactorTokenRequired") {
      throw new SignInError("Your PDS wants a 2FA code: use an app password instead.", "wrong-password");
    }
    throw new SignInError(`Your PDS refused the sign-in (HTTP ${res.status}${e.message ? `: ${e.message}` : ""}).`, "pds-error");
  }
  const body = (await res.json()) as Partial<Record<"did" | "accessJwt" | "refreshJwt", unknown>>;
  if (typeof body.accessJwt !== "string" || typeof body.refreshJwt !== "string") {
    throw new SignInError("Your PDS answered without session tokens.", "pds-error");
  }
  if (body.did !== account.did) {
    throw new SignInError("Your PDS signed in another account than the handle names.", "pds-error");
  }
  return { ...account, accessJwt: body.accessJwt, refreshJwt: body.refreshJwt };
}

/** Seconds-since-epoch `exp` of a JWT, or null when it has none we can read. */
export function jwtExpiry(jwt: string): number | null {
  try {
    const payload = JSON.parse(new TextDecoder().decode(base64urlDecode(jwt.split(".")[1] ?? "")));
    return typeof payload.exp === "number" ? payload.exp : null;
  } catch {
    return null;
  }
}

/**
 * A live PDS session: mints service-auth JWTs for our services, refreshing
 * its access token when it has expired. `save` is called with new tokens.
 */
export class PdsSession implements ServiceJwtSource {
  private refreshing: Promise<void> | null = null;
  /** True once the PDS refused to refresh: no more calls to it until a new sign-in. */
  ended = false;
  private endedListeners: (() => void)[] = [];

  constructor(
    private session: StoredSession,
    private save: (s: StoredSession) => Promise<void> = async () => {},
    private fetchFn: Fetch = (...a) => fetch(...a),
  ) {}

  get did(): string {
    return this.session.did;
  }

  get handle(): string {
    return this.session.handle;
  }

  /** `fn` runs once when the PDS ends the session (refreshSession refused), at once if it has. */
  onEnded(fn: () => void): void {
    if (this.ended) fn();
    else this.endedListeners.push(fn);
  }

  private expired(): SignInError {
    return new SignInError("Your atproto session has ended: sign in again.", "session-expired");
  }

  /** `getServiceAuth`'s token: `aud` = the service's DID, `lxm` = the method, valid `ttl` seconds. */
  async serviceJwt(aud: string, lxm: string, ttl: number): Promise<string> {
    if (this.ended) throw this.expired();
    if (this.refreshing) await this.refreshing;
    const exp = jwtExpiry(this.session.accessJwt);
    if (exp !== null && exp < Date.now() / 1000 + 5) await this.refresh();
    const used = this.session.accessJwt;
    let res = await this.getServiceAuth(aud, lxm, ttl);
    if (res.status === 401 || (res.status === 400 && (await errorOf(res.clone())).error === "ExpiredToken")) {
      // Several calls may have used the same expired token at once: only the
      // first to come back refreshes; the others retry with its new token.
      if (this.session.accessJwt === used) await this.refresh();
      else if (this.refreshing) await this.refreshing;
      res = await this.getServiceAuth(aud, lxm, ttl);
    }
    if (!res.ok) {
      const e = await errorOf(res);
      throw new SignInError(`Your PDS would not vouch for you to ${aud} (HTTP ${res.status}${e.error ? ` ${e.error}` : ""}).`, "pds-error");
    }
    const body = (await res.json()) as { token?: unknown };
    if (typeof body.token !== "string") throw new SignInError("Your PDS gave no service token.", "pds-error");
    return body.token;
  }

  private async getServiceAuth(aud: string, lxm: string, ttl: number): Promise<Response> {
    const exp = Math.floor(Date.now() / 1000) + ttl;
    const q = new URLSearchParams({ aud, lxm, exp: String(exp) });
    try {
      return await this.fetchFn(`${this.session.pds}/xrpc/com.atproto.server.getServiceAuth?${q}`, {
        headers: { Authorization: `Bearer ${this.session.accessJwt}` },
      });
    } catch {
      throw new SignInError(`Cannot reach your PDS at ${this.session.pds}.`, "pds-unreachable");
    }
  }

  /** com.atproto.server.refreshSession; one at a time however many calls need it. */
  refresh(): Promise<void> {
    if (this.ended) return Promise.reject(this.expired());
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    let res: Response;
    try {
      res = await this.fetchFn(`${this.session.pds}/xrpc/com.atproto.server.refreshSession`, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.session.refreshJwt}` },
      });
    } catch {
      throw new SignInError(`Cannot reach your PDS at ${this.session.pds}.`, "pds-unreachable");
    }
    if (res.status >= 500) {
      throw new SignInError(`Your PDS could not refresh the session now (HTTP ${res.status}).`, "pds-error");
    }
    if (!res.ok) {
      // 400 (ExpiredToken, InvalidToken) or 401: the PDS ended the session.
      this.ended = true;
      for (const fn of this.endedListeners.splice(0)) fn();
      throw this.expired();
    }
    const body = (await res.json()) as Partial<Record<"did" | "accessJwt" | "refreshJwt", unknown>>;
    if (typeof body.accessJwt !== "string" || typeof body.refreshJwt !== "string" || body.did !== this.session.did) {
      throw new SignInError("Your PDS answered the refresh without tokens for this account.", "pds-error");
    }
    this.session = { ...this.session, accessJwt: body.accessJwt, refreshJwt: body.refreshJwt };
    await this.save(this.session);
  }
}
