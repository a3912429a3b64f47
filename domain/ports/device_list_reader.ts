/**
 * Storage port for device-list tracking: whose device lists changed in a sync window, and the
 * membership facts needed to tell who shares a room with whom at either end of the window.
 * Tokens are sync tokens; versionstamps are the raw commit versionstamps of KV entries, which
 * compare with tokens through `isAfter` (domain/sync/sync_token.ts).
 */

/** One change of a member's membership in a room's current state. */
export interface MemberTransition {
  userId: string;
  /** The membership after the change; null when the user left current state altogether. */
  membership: string | null;
  /** The membership before it; null when the user had none. */
  prev: string | null;
  /** Versionstamp of the commit that made the change. */
  versionstamp: string;
}

/** A user's membership in a room now, with the versionstamp of the commit that last wrote it. */
export interface StampedMembership {
  roomId: string;
  userId: string;
  membership: string;
  versionstamp: string;
}

/** Reads for device-list tracking. */
export interface DeviceListChangeReader {
  /**
   * Users whose devices or cross-signing keys changed in commits in (since, upTo], read from the
   * server-wide change index; null when more than `limit` commits changed device lists in the
   * window (then ask `deviceListChangesOf` about the users that matter).
   */
  deviceListChanges(since: string, upTo: string, limit: number): Promise<Set<string> | null>;
  /** Those of `userIds` whose devices or cross-signing keys changed in (since, upTo]. */
  deviceListChangesOf(
    userIds: readonly string[],
    since: string,
    upTo: string,
  ): Promise<Set<string>>;
  /**
   * Rooms with member changes committed after sync token `since`, oldest first, each with its
   * commit's versionstamp; null when there are more than `limit` such commits.
   */
  memberChangeCommitsAfter(
    since: string,
    limit: number,
  ): Promise<{ roomId: string; versionstamp: string }[] | null>;
  /** Every room `userId` has a membership in now (any membership). */
  membershipsOf(userId: string): Promise<StampedMembership[]>;
  /** Every member of `roomId` now (any membership). */
  membersOf(roomId: string): Promise<StampedMembership[]>;
  /**
   * For each of `roomIds` with member changes committed after sync token `since` (later than
   * any `upTo` too): those changes, newest first. Rooms without any are absent.
   */
  memberTransitionsAfter(
    roomIds: readonly string[],
    since: string,
  ): Promise<Map<string, MemberTransition[]>>;
}
