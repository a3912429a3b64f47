/**
 * The storage port for typing notifications: per room, who types until when (`since`/`upTo`
 * are sync tokens).
 */

/** A room's typing users, each with the time their typing expires (ms since the epoch). */
export interface TypingRecord {
  roomId: string;
  users: Record<string, number>;
  /** Versionstamp of the commit that wrote it. */
  versionstamp: string;
}

/** Typing storage. */
export interface TypingStore {
  /**
   * Replace a room's typing map with what `change` makes of it, atomically; returns the commit
   * versionstamp, or null when `change` returned null (nothing to write).
   */
  update(
    roomId: string,
    change: (users: Record<string, number>) => Record<string, number> | null,
  ): Promise<string | null>;
  /**
   * Typing records of the rooms changed after `since` (all non-empty ones when absent) and not
   * after `upTo`.
   */
  changes(roomIds: readonly string[], options: { since?: string; upTo: string }): Promise<
    TypingRecord[]
  >;
  /** Rooms (at most `limit`) where someone's typing expired at or before `now`. */
  roomsDue(now: number, limit: number): Promise<string[]>;
}
