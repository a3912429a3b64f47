/**
 * The cache of other servers' users' device lists and cross-signing keys, kept fresh by their
 * `m.device_list_update` and `m.signing_key_update` EDUs (in order, with resyncs through
 * `GET /user/devices/{userId}` where the chain shows a gap: remote_device_updates.ts) and
 * read by /keys/query (cached_remote_key_querier.ts).
 *
 * Fresh only while we share a room with the user: their server sends updates only to servers
 * sharing a room with them, so a cache that outlived the sharing may have missed some. Two
 * rules keep it honest:
 * - callers use it only for users sharing a room with us now (`sharesRoom`, read from KV on
 *   every call) and drop EDUs about anyone else;
 * - when a membership change ends the sharing (the user leaves our last shared room, or our
 *   last local member leaves a room they are in), `dropUnshared` deletes the cache, so after a
 *   rejoin the next query or update resyncs (remote_device_sharing.ts runs it after the
 *   change's commit; a resync landing after it checks the sharing again and drops what it
 *   wrote). A process dying between that commit and the drop leaves a cache a rejoin would
 *   trust again; the user's next update whose prev_id we never saw still resyncs it.
 *
 * Every change the cache takes is logged as a device-list change of the remote user in the
 * same commit (the store does it), then the syncs of local users sharing a room are woken.
 * A list larger than about one KV value is changed only by resyncs: an EDU about it resyncs
 * rather than rewriting it (MAX_LIST_BYTES_REWRITTEN_BY_EDU).
 */
import { parseUserId } from "../protocol/identifiers.ts";
import type { RemoteDeviceList, RemoteDeviceStore } from "../ports/remote_device_store.ts";
import type { JsonObject } from "../protocol/json.ts";
import {
  cacheable,
  decideUpdate,
  type DeviceListUpdateEdu,
  listFromSnapshot,
  loggedReplacement,
  loggedUpdate,
  type RemoteDeviceSnapshot,
  withUpdate,
} from "./remote_device_updates.ts";

/** Where full device lists come from (`RemoteKeyClient.userDevices`). */
export interface RemoteDeviceSource {
  /** `userId`'s devices from `server`; throws when there is no usable answer. */
  userDevices(server: string, userId: string, timeoutMs?: number): Promise<RemoteDeviceSnapshot>;
}

/** What the cache needs. */
export interface RemoteDeviceCacheDeps {
  store: RemoteDeviceStore;
  source: RemoteDeviceSource;
  /** Whether `userId` shares a room with this server now (read from KV). */
  sharesRoom(userId: string): Promise<boolean>;
  /** Wake the syncs of those sharing a room with `userIds` after commit `versionstamp`. */
  changed(userIds: readonly string[], versionstamp: string): Promise<void>;
  /**
   * Longest wait for a resync an EDU asks for: the sending server's transaction waits on it,
   * and an unanswered resync marks the cache stale for the next query or update to retry.
   */
  updateResyncTimeoutMs?: number;
  log?: (message: string, ...details: unknown[]) => void;
  now?: () => number;
}

/**
 * After an update's resync failed against a server, its further updates needing one within
 * this long mark their users stale without trying: a transaction of a hundred updates from a
 * server whose /user/devices hangs costs one timeout, not a hundred.
 */
export const UPDATE_RESYNC_BACKOFF_MS = 60_000;

/** Default of `updateResyncTimeoutMs`. */
export const UPDATE_RESYNC_TIMEOUT_MS = 5_000;

/**
 * Largest cached list (UTF-8 JSON bytes, about one KV value) an EDU's change is written into.
 * A larger list (up to MAX_CACHED_LIST_BYTES) is rewritten only from a resync, where its server
 * sent it whole: else every EDU of a few hundred bytes, a hundred to a transaction, would
 * rewrite up to 400 KB (measured: 38 MB written for 100 EDUs).
 */
export const MAX_LIST_BYTES_REWRITTEN_BY_EDU = 60_000;

/** How an update was taken. */
export type UpdateOutcome = "seen" | "applied" | "resynced" | "resync_failed" | "not_shared";

/** Master and self-signing keys an `m.signing_key_update` carries. */
export interface SigningKeyUpdate {
  userId: string;
  masterKey?: JsonObject;
  selfSigningKey?: JsonObject;
}

/** The remote device-list cache (see the module comment). */
export class RemoteDeviceCache {
  /** Resyncs in flight in this process, so concurrent queries of one user ask once. */
  readonly #resyncs = new Map<string, Promise<RemoteDeviceList>>();
  /**
   * Servers whose update-triggered resync failed, and when (this process's hint only: another
   * process tries once itself; a success clears it).
   */
  readonly #failedServers = new Map<string, number>();

  /** Over the store, the resync source and the sharing check. */
  constructor(private readonly deps: RemoteDeviceCacheDeps) {}

  /** Whether `userId` shares a room with this server now. */
  sharesRoom(userId: string): Promise<boolean> {
    return this.deps.sharesRoom(userId);
  }

  /** The cached lists of those of `userIds` that have one (callers check sharing). */
  lists(userIds: readonly string[]): Promise<Map<string, RemoteDeviceList>> {
    return this.deps.store.get(userIds);
  }

  /**
   * Take one `m.device_list_update` (its user already checked to belong to the sender): apply
   * it, or resync the user's whole list when it shows a gap.
   */
  async applyUpdate(update: DeviceListUpdateEdu): Promise<UpdateOutcome> {
    if (!(await this.deps.sharesRoom(update.userId))) return "not_shared";
    const { result, versionstamp } = await this.deps.store.modify(update.userId, (current) => {
      const decision = decideUpdate(current, update);
      if (decision !== "apply") return { result: decision };
      if (!rewritableByEdu(current!)) return { result: "resync" as const };
      const next = withUpdate(current!, update);
      if (!cacheable(next)) return { result: "resync" as const };
      return { result: decision, write: { next, log: loggedUpdate(update) } };
    });
    if (versionstamp !== null) await this.deps.changed([update.userId], versionstamp);
    if (result === "seen") return "seen";
    if (result === "apply") return "applied";
    return await this.#resyncForEdu(update.userId);
  }

  /** Take one `m.signing_key_update` (its user already checked to belong to the sender). */
  async applySigningKeys(update: SigningKeyUpdate): Promise<boolean> {
    if (update.masterKey === undefined && update.selfSigningKey === undefined) return false;
    if (!(await this.deps.sharesRoom(update.userId))) return false;
    const { result, versionstamp } = await this.deps.store.modify(update.userId, (current) => {
      const log = { deviceIds: [], deleted: [], crossSigning: true };
      // Nothing cached: local clients still hear of it; their query resyncs the keys.
      if (current === null) return { result: "written", write: { next: null, log } };
      // A large list takes the new keys from a resync (see MAX_LIST_BYTES_REWRITTEN_BY_EDU).
      if (!rewritableByEdu(current)) return { result: "resync" };
      const next: RemoteDeviceList = { ...current };
      if (update.masterKey !== undefined) next.masterKey = update.masterKey;
      if (update.selfSigningKey !== undefined) next.selfSigningKey = update.selfSigningKey;
      return { result: "written", write: { next, log } };
    });
    if (versionstamp !== null) await this.deps.changed([update.userId], versionstamp);
    if (result === "resync") await this.#resyncForEdu(update.userId);
    return true;
  }

  /**
   * Resync `userId` for an EDU that cannot be applied, within the update timeout; after a
   * failure against their server, its further EDUs within UPDATE_RESYNC_BACKOFF_MS mark their
   * users stale without asking.
   */
  async #resyncForEdu(userId: string): Promise<"resynced" | "resync_failed"> {
    const server = serverOf(userId);
    const now = this.deps.now ?? Date.now;
    const failedAt = this.#failedServers.get(server);
    if (failedAt !== undefined && now() - failedAt < UPDATE_RESYNC_BACKOFF_MS) {
      await this.#markStale(userId);
      return "resync_failed";
    }
    try {
      await this.resync(userId, this.deps.updateResyncTimeoutMs ?? UPDATE_RESYNC_TIMEOUT_MS);
      this.#failedServers.delete(server);
      return "resynced";
    } catch (error) {
      this.deps.log?.(`device lists: resync of ${userId} failed`, error);
      this.#failedServers.set(server, now());
      await this.#markStale(userId);
      return "resync_failed";
    }
  }

  /**
   * Fetch `userId`'s whole list from their server and cache it (callers check sharing); the
   * list, cached or (too large to cache) not. Throws when the server gives no usable answer.
   * Concurrent resyncs of one user in this process share one request.
   */
  resync(userId: string, timeoutMs: number): Promise<RemoteDeviceList> {
    const running = this.#resyncs.get(userId);
    if (running) return running;
    const promise = this.#resync(userId, timeoutMs).finally(() => this.#resyncs.delete(userId));
    this.#resyncs.set(userId, promise);
    return promise;
  }

  /** Drop the caches of those of `userIds` who no longer share a room with us. */
  async dropUnshared(userIds: readonly string[]): Promise<string[]> {
    const cached = await this.deps.store.get(userIds);
    const dropped: string[] = [];
    for (const userId of cached.keys()) {
      if (!(await this.deps.sharesRoom(userId))) dropped.push(userId);
    }
    if (dropped.length > 0) await this.deps.store.drop(dropped);
    return dropped;
  }

  async #resync(userId: string, timeoutMs: number): Promise<RemoteDeviceList> {
    const snapshot = await this.deps.source.userDevices(serverOf(userId), userId, timeoutMs);
    const fetched = listFromSnapshot(snapshot);
    const { result, versionstamp } = await this.deps.store.modify(userId, (current) => {
      // An update applied meanwhile moved the cache past the answer: keep the newer.
      if (current !== null && !current.stale && current.streamId > fetched.streamId) {
        return { result: current };
      }
      const log = loggedReplacement(current, fetched);
      if (!cacheable(fetched)) {
        return { result: fetched, write: { next: null, log } };
      }
      return { result: fetched, write: { next: fetched, log } };
    });
    if (versionstamp !== null) {
      await this.deps.changed([userId], versionstamp);
      // The sharing may have ended while the request was out (the drop then found nothing to
      // drop): what was written must not outlive it.
      if (!(await this.deps.sharesRoom(userId))) await this.deps.store.drop([userId]);
    }
    return result;
  }

  /**
   * After a failed resync: the cache (if any) is behind its server. It keeps answering queries
   * (better than nothing while the server is down) but the next update or query resyncs, and
   * local clients are told to query again.
   */
  async #markStale(userId: string): Promise<void> {
    const { versionstamp } = await this.deps.store.modify(userId, (current) => {
      if (current === null || current.stale) return { result: null };
      return {
        result: null,
        write: {
          next: { ...current, stale: true },
          log: { deviceIds: [], deleted: [], crossSigning: false },
        },
      };
    });
    if (versionstamp !== null) await this.deps.changed([userId], versionstamp);
  }
}

/** Whether an EDU's change may be written into `list` (MAX_LIST_BYTES_REWRITTEN_BY_EDU). */
function rewritableByEdu(list: RemoteDeviceList): boolean {
  return new TextEncoder().encode(JSON.stringify(list)).byteLength <=
    MAX_LIST_BYTES_REWRITTEN_BY_EDU;
}

/** The server of a user ID the caller checked. */
function serverOf(userId: string): string {
  const parsed = parseUserId(userId);
  if (!parsed.ok) throw new Error(`not a user ID: ${userId}`);
  return parsed.value.serverName;
}
