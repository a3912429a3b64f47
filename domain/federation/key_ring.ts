/**
 * The key ring: the public signing keys of homeservers, ours and remote ones, as
 * gomatrixserverlib's KeyRing and Synapse's Keyring provide them. Request authentication
 * (X-Matrix) and event signature checks ask it for one key at one moment.
 *
 * Remote keys live in KV (shared by every isolate). On a miss, or when the cached key is not
 * valid at the moment asked about, the server's own `/_matrix/key/v2/server` is fetched
 * (unsigned, as the spec allows) and its self-signature checked; if that yields nothing usable,
 * the configured notaries are asked (`POST /_matrix/key/v2/query`) and their signatures checked
 * too. Concurrent misses for one server share one fetch in a process; a server whose fetches
 * keep failing is left alone for a while, recorded in KV so every isolate backs off together.
 */
import type { FederationTransport } from "../ports/federation_transport.ts";
import type { ServerKeyStore, StoredServerKey } from "../ports/server_key_store.ts";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import { verifyJsonSignature } from "../protocol/signing.ts";
import { ownVerifyKey, type ServerKeyring } from "../protocol/server_keys.ts";
import { ED25519_KEY_ID, type TrustedKeyServer } from "./key_config.ts";
import { keyValidAt, storedKeysOf, verifyKeyDocument } from "./key_document.ts";

/** Looks up the public half of a server's signing key. */
export interface KeyRing {
  /**
   * The Ed25519 public key `keyId` of `serverName` if it was valid at `atTs` (ms since the
   * epoch), else undefined (unknown key, unreachable server, expired before `atTs`). A current
   * key counts as valid up to its `valid_until_ts` (capped at 7 days after fetching, as the
   * spec requires), an old key up to its `expired_ts`. Pass `atTs` 0 to accept any key the
   * server ever published (room versions 1 to 4, which do not enforce key validity).
   */
  verifyKey(serverName: string, keyId: string, atTs: number): Promise<Uint8Array | undefined>;
}

/** Longest key ID looked up (the spec sets none; Synapse's are under 30 characters). */
const MAX_KEY_ID_LENGTH = 255;

/** How long fetching keys from one server may take before it counts as failed. */
const FETCH_TIMEOUT_MS = 10_000;

/**
 * Wait before fetching again after `failures` failed fetches in a row: none after the first
 * (one failure may be a blip, and a notary's caller may be retrying on purpose), then 1 minute,
 * doubling up to 1 hour. A success resets the count.
 */
export function keyFetchBackoffMs(failures: number): number {
  if (failures <= 1) return 0;
  return Math.min(60_000 * 2 ** (failures - 2), 60 * 60_000);
}

/** What the key ring needs. */
export interface FederationKeyRingDeps {
  /** Our own keys: answered locally, never fetched. */
  own: ServerKeyring;
  store: ServerKeyStore;
  transport: FederationTransport;
  /** Notaries to ask when a server yields no usable key itself (none by default). */
  notaries?: readonly TrustedKeyServer[];
  now?: () => number;
}

/** The key ring over a KV cache, a direct fetcher and optional notaries. */
export class FederationKeyRing implements KeyRing {
  private readonly now: () => number;
  // Fetches in flight, by server: only while they run, so nothing here can go stale.
  private readonly inFlight = new Map<string, Promise<void>>();

  /** Build over `deps`. */
  constructor(private readonly deps: FederationKeyRingDeps) {
    this.now = deps.now ?? Date.now;
  }

  async verifyKey(
    serverName: string,
    keyId: string,
    atTs: number,
  ): Promise<Uint8Array | undefined> {
    if (serverName === this.deps.own.serverName) return ownVerifyKey(this.deps.own, keyId, atTs);
    // No server publishes a key ID this long, and one past KV's key limit would fail the read:
    // a PDU's signatures or an X-Matrix header may name any string.
    if (keyId.length > MAX_KEY_ID_LENGTH || !ED25519_KEY_ID.test(keyId)) return undefined;
    const cached = await this.deps.store.getKey(serverName, keyId);
    if (cached !== undefined && keyValidAt(cached, atTs)) return cached.publicKey;
    await this.refresh(serverName, keyId, atTs);
    const fresh = await this.deps.store.getKey(serverName, keyId);
    return fresh !== undefined && keyValidAt(fresh, atTs) ? fresh.publicKey : undefined;
  }

  /**
   * Fetch `serverName`'s key document directly and cache it, unless its fetches are backing
   * off. Used by the notary endpoint, which answers only with what servers said themselves.
   */
  fetchDirect(serverName: string): Promise<void> {
    return this.deduplicated(serverName, async () => {
      if (await this.backingOff(serverName)) return;
      if (!(await this.fetchFromServer(serverName))) await this.recordFailure(serverName);
    });
  }

  private refresh(serverName: string, keyId: string, atTs: number): Promise<void> {
    return this.deduplicated(serverName, async () => {
      if (await this.backingOff(serverName)) return;
      let answered = await this.fetchFromServer(serverName);
      const direct = answered ? await this.deps.store.getKey(serverName, keyId) : undefined;
      if (direct === undefined || !keyValidAt(direct, atTs)) {
        for (const notary of this.deps.notaries ?? []) {
          // Neither the server in question nor ourselves can vouch for its keys.
          if (notary.serverName === serverName || notary.serverName === this.deps.own.serverName) {
            continue;
          }
          if (await this.fetchFromNotary(notary, serverName, keyId, atTs)) {
            answered = true;
            const found = await this.deps.store.getKey(serverName, keyId);
            if (found !== undefined && keyValidAt(found, atTs)) break;
          }
        }
      }
      if (!answered) await this.recordFailure(serverName);
    });
  }

  private deduplicated(serverName: string, fetch: () => Promise<void>): Promise<void> {
    const running = this.inFlight.get(serverName);
    if (running !== undefined) return running;
    const started = fetch().catch((error) => {
      // A store failure must not leave a rejected promise for later callers; they retry.
      console.warn("key ring: fetching keys failed", serverName, error);
    }).finally(() => this.inFlight.delete(serverName));
    this.inFlight.set(serverName, started);
    return started;
  }

  private async backingOff(serverName: string): Promise<boolean> {
    const failure = await this.deps.store.getFetchFailure(serverName);
    return failure !== undefined && this.now() < failure.retryAtTs;
  }

  private async recordFailure(serverName: string): Promise<void> {
    await this.deps.store.recordFetchFailure(serverName, this.now(), keyFetchBackoffMs);
  }

  /** GET the server's own document; true when a verified document was stored. */
  private async fetchFromServer(serverName: string): Promise<boolean> {
    const body = await this.request(serverName, {
      method: "GET",
      path: "/_matrix/key/v2/server",
      signed: false,
    });
    if (body === undefined) return false;
    const checked = await verifyKeyDocument(body, serverName);
    if (!checked.ok) {
      console.warn(`key ring: refused the key document of ${serverName}: ${checked.reason}`);
      return false;
    }
    await this.deps.store.putKeys(storedKeysOf(checked.value, this.now()));
    return true;
  }

  /** Ask `notary` for `serverName`'s keys; true when at least one verified document was stored. */
  private async fetchFromNotary(
    notary: TrustedKeyServer,
    serverName: string,
    keyId: string,
    atTs: number,
  ): Promise<boolean> {
    const body = await this.request(notary.serverName, {
      method: "POST",
      path: "/_matrix/key/v2/query",
      body: { server_keys: { [serverName]: { [keyId]: { minimum_valid_until_ts: atTs } } } },
    });
    if (!isJsonObject(body) || !Array.isArray(body.server_keys)) return false;
    const keys: StoredServerKey[] = [];
    for (const entry of body.server_keys.slice(0, 20)) {
      if (!isJsonObject(entry) || entry.server_name !== serverName) continue;
      if (!(await this.signedByNotary(entry, notary))) {
        console.warn(`key ring: ${notary.serverName}'s answer about ${serverName} is not signed`);
        continue;
      }
      const checked = await verifyKeyDocument(entry, serverName);
      if (checked.ok) keys.push(...storedKeysOf(checked.value, this.now()));
    }
    if (keys.length === 0) return false;
    await this.deps.store.putKeys(keys);
    return true;
  }

  /**
   * Whether the notary signed `entry`: with a pinned key when the configuration pins any,
   * else with a key fetched from the notary itself (never through another notary).
   */
  private async signedByNotary(entry: JsonObject, notary: TrustedKeyServer): Promise<boolean> {
    const signatures = isJsonObject(entry.signatures)
      ? entry.signatures[notary.serverName]
      : undefined;
    if (!isJsonObject(signatures)) return false;
    for (const keyId of Object.keys(signatures)) {
      if (!ED25519_KEY_ID.test(keyId)) continue;
      const publicKey = notary.verifyKeys !== undefined
        ? notary.verifyKeys[keyId]
        : await this.notaryKey(notary.serverName, keyId);
      if (publicKey === undefined) continue;
      if (await verifyJsonSignature(entry, notary.serverName, keyId, publicKey)) return true;
    }
    return false;
  }

  private async notaryKey(notary: string, keyId: string): Promise<Uint8Array | undefined> {
    const now = this.now();
    const cached = await this.deps.store.getKey(notary, keyId);
    if (cached !== undefined && keyValidAt(cached, now)) return cached.publicKey;
    // Not deduplicated under the notary's name: this runs inside a fetch for another server,
    // and waiting on a fetch of the notary that itself waits here would never end.
    if (!(await this.fetchFromServer(notary))) return undefined;
    const fresh = await this.deps.store.getKey(notary, keyId);
    return fresh !== undefined && keyValidAt(fresh, now) ? fresh.publicKey : undefined;
  }

  private async request(
    destination: string,
    request: { method: "GET" | "POST"; path: string; body?: JsonObject; signed?: boolean },
  ): Promise<unknown> {
    try {
      const response = await this.deps.transport.request({
        ...request,
        destination,
        timeoutMs: FETCH_TIMEOUT_MS,
      });
      return response.status === 200 ? response.body : undefined;
    } catch (error) {
      // FederationUnreachable and anything else the transport throws: no answer.
      console.warn(`key ring: ${destination}${request.path}: ${(error as Error).message}`);
      return undefined;
    }
  }
}
