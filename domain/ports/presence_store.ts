/**
 * The storage port for presence: one record per user and a change index for sync
 * (`since`/`upTo` are sync tokens).
 */

/** The presence states of the spec. */
export type PresenceState = "online" | "unavailable" | "offline";

/** A user's stored presence. */
export interface PresenceRecord {
  userId: string;
  presence: PresenceState;
  statusMsg?: string;
  /** When the user was last active (ms since the epoch); absent when never. */
  lastActiveTs?: number;
  /**
   * A remote user's `currently_active` as their server sent it (that server knows; we would
   * only guess from a `last_active_ago` that ages between its updates). Absent for local users,
   * whose value follows from `lastActiveTs`.
   */
  currentlyActive?: boolean;
  /**
   * A remote user's: when their server last told us (ms since the epoch). Servers resend
   * presence of users still online every 25 minutes; one silent for longer has gone (crashed,
   * or the user stopped), and the user is shown offline from then on.
   */
  receivedTs?: number;
  /** A local user's: when their presence was last sent to other servers (the resend clock). */
  federatedTs?: number;
}

/** Presence storage. */
export interface PresenceStore {
  /** A user's presence; null when never set. */
  get(userId: string): Promise<PresenceRecord | null>;
  /** Presence of each of `userIds` that has any (order not kept; unknown users left out). */
  getMany(userIds: readonly string[]): Promise<PresenceRecord[]>;
  /**
   * Replace a user's presence; returns the commit versionstamp. `wake`: the change is visible
   * (not a refresh of the last-active time alone), so the syncs of the user and of the rooms
   * they joined, in every process, wake with it.
   */
  put(record: PresenceRecord, options?: { wake?: boolean }): Promise<string>;
  /** Presence records written after `since` (all when absent) and not after `upTo`. */
  changes(options: { since?: string; upTo: string }): Promise<PresenceRecord[]>;
  /**
   * Presence records of the users `audience` names, last written after `since` (their current
   * records when absent) and not after `upTo`. Costs about as many reads as the audience or the
   * window's changes, whichever is fewer, never one per user of the server; `audience` is not
   * called when the window holds no change.
   */
  changesOf(
    audience: () => Promise<readonly string[]>,
    options: { since?: string; upTo: string },
  ): Promise<PresenceRecord[]>;
}
