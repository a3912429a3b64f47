/**
 * Storage port for the cache of other servers' users' device lists (domain/e2ee/
 * remote_device_cache.ts): per remote user, their devices (keys, display name), master and
 * self-signing keys, and how far along their server's device-list stream the cache is.
 *
 * Every write that changes what local clients would fetch is logged as a device-list change of
 * the remote user in the same commit (the server-wide change index and the user's log, as a
 * local user's key change is), so sync's and /keys/changes' `device_lists.changed` list them.
 */
import type { JsonObject } from "../protocol/json.ts";

/** One cached device of a remote user. */
export interface CachedRemoteDevice {
  /** The device's signed keys; absent when its server listed it without usable keys. */
  keys?: JsonObject;
  displayName?: string;
}

/** A remote user's cached device list. */
export interface RemoteDeviceList {
  userId: string;
  /** The origin's device-list stream position the cache is at (highest update applied). */
  streamId: number;
  /** The stream position of the last full resync (`GET /user/devices`). */
  resyncedAt: number;
  /**
   * Stream positions the cache is known to include (the resync position and the updates
   * applied after it, newest last, bounded), which a later update's `prev_id` may name.
   */
  known: number[];
  devices: Record<string, CachedRemoteDevice>;
  masterKey?: JsonObject;
  selfSigningKey?: JsonObject;
  /**
   * Set when an update showed a gap the resync could not close (the server was unreachable):
   * the next update or key query resyncs, and until one succeeds the cache still answers.
   */
  stale?: boolean;
}

/** What a device-list change logged for local clients names. */
export interface LoggedRemoteChange {
  deviceIds: string[];
  deleted: string[];
  crossSigning: boolean;
}

/** A decision on a user's cache: what to write (nothing when absent) and what to return. */
export interface RemoteDeviceListDecision<T> {
  /**
   * The new list, or null to drop the cache; absent: write nothing. `log` says whether the
   * write is a change local clients must hear of.
   */
  write?: { next: RemoteDeviceList | null; log: LoggedRemoteChange | null };
  result: T;
}

/** The remote device-list cache's storage. */
export interface RemoteDeviceStore {
  /** The cached lists of those of `userIds` that have one. */
  get(userIds: readonly string[]): Promise<Map<string, RemoteDeviceList>>;
  /**
   * Read `userId`'s list, let `decide` (pure, maybe called again after a conflicting write)
   * say what to write, and commit it with its device-list change log entry under a check on
   * the list, so concurrent writers of one user serialise. `versionstamp` is the commit's (null
   * when nothing was written).
   */
  modify<T>(
    userId: string,
    decide: (current: RemoteDeviceList | null) => RemoteDeviceListDecision<T>,
  ): Promise<{ result: T; versionstamp: string | null }>;
  /** Drop the cached lists of `userIds` (no change is logged: no local user shares a room). */
  drop(userIds: readonly string[]): Promise<void>;
}
