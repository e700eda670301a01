// Which identity this device uses: its own did:key (the local-first default),
// or an atproto account signed in through its PDS with an app password. For
// an atproto account the device keeps the PDS session's tokens (never the
// password) and the keys the keyserver holds for the account (fetched again
// at every online start), in the same IndexedDB store as a did:key's seed.

import { ed25519 } from "@noble/curves/ed25519.js";
import { createSession, PdsSession, resolveAccount, SignInError, type StoredSession } from "./atproto";
import type { Config } from "./config";
import { deviceSettings, idbDelete, idbGet, idbPut, loadOrCreateIdentity, type Identity } from "./identity";
import { rememberOwnSecrets, useKeyserver, type PrivateKeys } from "./keys";
import { ServiceAuth } from "./services";

const ACCOUNT = "atproto";

export interface StoredAccount {
  session: StoredSession;
  signingSeed: Uint8Array;
  /** X25519 secrets for opening mail, current first. */
  encryptionSecrets: Uint8Array[];
}

type Persist = (account: StoredAccount | null) => Promise<void>;

const persistInIdb: Persist = (account) => (account ? idbPut(ACCOUNT, account) : idbDelete(ACCOUNT));

function identityOf(account: StoredAccount, persist: Persist): Identity {
  const pds = new PdsSession(account.session, async (session) => {
    account.session = session;
    await persist(account);
  });
  rememberOwnSecrets(account.session.did, account.encryptionSecrets);
  return {
    did: account.session.did,
    handle: account.session.handle,
    seed: account.signingSeed,
    publicKey: ed25519.getPublicKey(account.signingSeed),
    pds,
  };
}

/** The signed-in atproto account if there is one, else this device's did:key (created on first run). */
export async function loadIdentity(): Promise<Identity> {
  const account = await idbGet<StoredAccount>(ACCOUNT);
  if (account?.session?.did) return identityOf(account, persistInIdb);
  return loadOrCreateIdentity();
}

/**
 * Signs in with an atproto handle and app password: resolves the handle
 * through our resolver, opens a session on the account's PDS, and fetches the
 * account's keys from the keyserver with a PDS-minted JWT. Stores the session
 * tokens and keys (not the password); reload the app to use the account.
 * Throws SignInError with a message for the person.
 */
export async function signIn(
  handle: string,
  password: string,
  config: Config,
  persist: Persist = persistInIdb,
): Promise<Identity> {
  const resolver = config.http.resolver ?? config.services.resolver;
  if (!resolver) throw new SignInError("This Hearth has no resolver configured.", "resolver");
  const resolved = await resolveAccount(resolver, handle);
  const session = await createSession(resolved, password);
  const pds = new PdsSession(session);
  const auth = new ServiceAuth({ did: session.did, seed: new Uint8Array(32), publicKey: new Uint8Array(32), pds }, config);
  let keys: PrivateKeys;
  try {
    keys = await auth.privateKeys();
  } catch (e) {
    throw new SignInError(
      `Signed in, but Hearth's keyserver did not hand over your keys (${e instanceof Error ? e.message : e}).`,
      "pds-error",
    );
  }
  const account: StoredAccount = { session, signingSeed: keys.signingSeed, encryptionSecrets: keys.encryptionSecrets };
  await persist(account);
  return identityOf(account, persist);
}

/** Forgets the atproto account on this device (its did:key identity stays); reload afterwards. */
export function signOut(persist: Persist = persistInIdb): Promise<void> {
  return persist(null);
}

/**
 * Call once at start: sealing looks keys up on this keyserver; an atproto
 * account's keys are fetched again (the keyserver may have rotated them); a
 * did:key's public keys are registered once, so others find them there.
 */
export async function startKeys(identity: Identity, config: Config, auth: ServiceAuth): Promise<void> {
  const base = config.http.keyserver ?? config.services.keyserver ?? null;
  useKeyserver(base);
  if (!base || !navigator.onLine) return;
  try {
    if (identity.pds) {
      const keys = await auth.privateKeys();
      identity.seed = keys.signingSeed;
      identity.publicKey = keys.signingPublic;
      rememberOwnSecrets(identity.did, keys.encryptionSecrets);
      const account = await idbGet<StoredAccount>(ACCOUNT);
      if (account?.session.did === identity.did) {
        await idbPut(ACCOUNT, { ...account, signingSeed: keys.signingSeed, encryptionSecrets: keys.encryptionSecrets });
      }
    } else if (!(await deviceSettings.get<boolean>(`keys-registered:${identity.did}`))) {
      if (await auth.registerKeys()) await deviceSettings.set(`keys-registered:${identity.did}`, true);
    }
  } catch (e) {
    console.info("keyserver not reachable now:", e instanceof Error ? e.message : String(e));
  }
}
