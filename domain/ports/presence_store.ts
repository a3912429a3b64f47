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
}
