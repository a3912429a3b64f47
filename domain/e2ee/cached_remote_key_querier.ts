/**
 * /keys/query for other servers' users through the remote device-list cache
 * (remote_device_cache.ts), as Synapse answers it:
 * - a user sharing a room with us whose list is cached and not stale: from the cache, without
 *   asking their server (their updates keep it fresh);
 * - sharing a room but nothing cached, or stale: a resync (`GET /user/devices`), cached and
 *   answered; when it fails, a stale cache still answers (the server being down does not make
 *   the devices we know vanish), else the server is reported in `failures`. At most
 *   MAX_RESYNCS_PER_QUERY per query (each is a request); further uncached users go into the
 *   batched query below, further stale ones are answered stale;
 * - not sharing a room: their server is asked directly (`POST /user/keys/query`), nothing cached
 *   (no updates would keep it fresh).
 */
import { mapLimited } from "../concurrency.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { RemoteDeviceList } from "../ports/remote_device_store.ts";
import type { RemoteKeyQuerier, RemoteKeyQueryResult } from "./key_query.ts";
import type { RemoteDeviceCache } from "./remote_device_cache.ts";

/** Sharing checks and resyncs in flight at once for one query. */
const USERS_IN_FLIGHT = 8;

/** Users without a cache resynced by one query; others are asked in the batched query. */
export const MAX_RESYNCS_PER_QUERY = 16;

/**
 * Share of the client's timeout a resync may take, so a stale cache can still answer before
 * the query's own deadline reports the server as failed.
 */
const RESYNC_SHARE_OF_TIMEOUT = 0.8;

/** What the querier needs. */
export interface CachedRemoteKeyQuerierDeps {
  cache: RemoteDeviceCache;
  /** Asks the server directly (`RemoteKeyClient`). */
  direct: RemoteKeyQuerier;
  log?: (message: string, ...details: unknown[]) => void;
}

/** `RemoteKeyQuerier` answering from the cache where it may (see the module comment). */
export class CachedRemoteKeyQuerier implements RemoteKeyQuerier {
  /** Over the cache and the direct querier. */
  constructor(private readonly deps: CachedRemoteKeyQuerierDeps) {}

  async query(
    serverName: string,
    deviceKeys: Record<string, string[]>,
    timeoutMs: number,
  ): Promise<RemoteKeyQueryResult> {
    const users = Object.keys(deviceKeys);
    const sharing = await mapLimited(
      users,
      USERS_IN_FLIGHT,
      (userId) => this.deps.cache.sharesRoom(userId),
    );
    const sharers = users.filter((_, i) => sharing[i]);
    const direct: Record<string, string[]> = {};
    users.forEach((userId, i) => {
      if (!sharing[i]) direct[userId] = deviceKeys[userId];
    });
    const cached = await this.deps.cache.lists(sharers);
    // Each resync is a request of its own: past a few, the rest are asked in the one batched
    // query (uncached; a later query resyncs them).
    const resync = new Set<string>();
    const tracked = sharers.filter((userId) => {
      const list = cached.get(userId);
      if (list !== undefined && !list.stale) return true;
      if (resync.size < MAX_RESYNCS_PER_QUERY) {
        resync.add(userId);
        return true;
      }
      // Stale and over the budget: the stale list answers this time.
      if (list !== undefined) return true;
      direct[userId] = deviceKeys[userId];
      return false;
    });
    const resyncTimeout = Math.floor(timeoutMs * RESYNC_SHARE_OF_TIMEOUT);
    let failure: JsonObject | undefined;
    const [lists, directResult] = await Promise.all([
      mapLimited(tracked, USERS_IN_FLIGHT, async (userId) => {
        const list = cached.get(userId);
        if (!resync.has(userId)) return list;
        try {
          return await this.deps.cache.resync(userId, resyncTimeout);
        } catch (error) {
          this.deps.log?.(`keys: resync of ${userId} failed`, error);
          if (list !== undefined) return list;
          failure = failureOf(error);
          return undefined;
        }
      }),
      Object.keys(direct).length === 0
        ? Promise.resolve(undefined)
        : this.deps.direct.query(serverName, direct, timeoutMs).catch((error) => {
          failure = failureOf(error);
          return undefined;
        }),
    ]);
    const answered = lists.filter((l) => l !== undefined).length;
    if (answered === 0 && directResult === undefined && failure !== undefined) {
      throw new Error(String(failure.message));
    }
    const result: Required<Omit<RemoteKeyQueryResult, "failure">> & RemoteKeyQueryResult = {
      device_keys: { ...directResult?.device_keys },
      master_keys: { ...directResult?.master_keys },
      self_signing_keys: { ...directResult?.self_signing_keys },
    };
    tracked.forEach((userId, i) => {
      const list = lists[i];
      if (list === undefined) return;
      result.device_keys[userId] = deviceKeysOf(list, deviceKeys[userId]);
      if (list.masterKey !== undefined) result.master_keys[userId] = list.masterKey;
      if (list.selfSigningKey !== undefined) {
        result.self_signing_keys[userId] = list.selfSigningKey;
      }
    });
    if (failure !== undefined) result.failure = failure;
    return result;
  }
}

/**
 * The /keys/query entries of a cached list: the requested devices (all when none named), each
 * its signed keys with the display name in `unsigned`. A device its server listed without
 * usable keys is answered with an empty key set, as Synapse lists it: it exists, and no client
 * trusts a device whose keys carry no signature.
 */
export function deviceKeysOf(
  list: RemoteDeviceList,
  requested: readonly string[],
): Record<string, JsonObject> {
  const wanted = requested.length === 0 ? Object.keys(list.devices) : requested;
  const out: Record<string, JsonObject> = {};
  for (const deviceId of wanted) {
    if (!Object.hasOwn(list.devices, deviceId)) continue;
    const device = list.devices[deviceId];
    const keys: JsonObject = device.keys ??
      { user_id: list.userId, device_id: deviceId, algorithms: [], keys: {}, signatures: {} };
    const { unsigned: _unsigned, ...signed } = keys;
    const unsigned: JsonObject = {};
    if (device.displayName !== undefined) unsigned.device_display_name = device.displayName;
    out[deviceId] = { ...signed, unsigned };
  }
  return out;
}

function failureOf(error: unknown): JsonObject {
  return { status: 503, message: error instanceof Error ? error.message : String(error) };
}
