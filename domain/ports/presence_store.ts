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
}

/** Presence storage. */
export interface PresenceStore {
  /** A user's presence; null when never set. */
  get(userId: string): Promise<PresenceRecord | null>;
  /** Replace a user's presence; returns the commit versionstamp. */
  put(record: PresenceRecord): Promise<string>;
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
