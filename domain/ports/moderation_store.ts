/** Storage port for account moderation (locks, suspensions) and content reports. */

/** An account's moderation status, as server administrators set it. */
export interface AccountModerationRecord {
  /** Locked: every request with the user's tokens is refused, and so is logging in. */
  locked: boolean;
  /** Suspended: the user may read and leave, but not send, join, invite or edit the profile. */
  suspended: boolean;
  /** Who changed it last, and when (ms). */
  updatedBy: string;
  updatedAt: number;
}

/** A report of a room, an event or a user, kept for the server's administrators. */
export interface ContentReportRecord {
  /** Sortable ID: the report time in ms, zero-padded, then a random suffix. */
  reportId: string;
  kind: "room" | "event" | "user";
  reporter: string;
  reason: string;
  roomId?: string;
  eventId?: string;
  userId?: string;
  /** The `score` clients may give for an event, from -100 (most offensive) to 0. */
  score?: number;
  receivedAt: number;
}

/** Where moderation data lives; implemented over Deno KV. */
export interface ModerationStore {
  /** The user's moderation status, or null when none was ever set. */
  getAccountModeration(userId: string): Promise<AccountModerationRecord | null>;
  /** Replace the user's moderation status. */
  putAccountModeration(userId: string, record: AccountModerationRecord): Promise<void>;
  /** Keep a report. */
  addReport(report: ContentReportRecord): Promise<void>;
  /** Reports, oldest first (those of one millisecond in no set order), after `afterId`, at most `limit`. */
  listReports(afterId: string | undefined, limit: number): Promise<ContentReportRecord[]>;
}
