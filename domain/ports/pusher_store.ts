/** The storage port for pushers: one record per user holding the list of their pushers. */
import type { Pusher } from "../push/pushers.ts";

/** A user's pushers and the versionstamp of the commit that wrote them (null: none yet). */
export interface StoredPushers {
  pushers: Pusher[];
  versionstamp: string | null;
}

/** Pusher storage. */
export interface PusherStore {
  /** The user's pushers. */
  get(userId: string): Promise<StoredPushers>;
  /** Several users' pushers at once (the notification planner reads each recipient's). */
  getMany(userIds: readonly string[]): Promise<Map<string, Pusher[]>>;
  /**
   * Write the user's pushers unless someone wrote them since `expected`; keeps the index of
   * (app_id, pushkey) holders in the same commit. Returns false on a conflict (reread, retry).
   */
  put(userId: string, pushers: readonly Pusher[], expected: StoredPushers): Promise<boolean>;
  /** Users holding a pusher for this app's push key. */
  holders(appId: string, pushkey: string): Promise<string[]>;
}
