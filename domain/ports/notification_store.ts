/**
 * The storage port for notifications: which events notified which local user, written in the
 * same commit as the event, and the counts and lists read from them.
 */
import type { CommitMutation } from "./event_store.ts";
import type { PushAction } from "../push/push_rules.ts";

/** The thread key of the main timeline (as threaded receipts name it). */
export const MAIN_THREAD = "main";

/** One notification of one user. */
export interface NotificationEntry {
  userId: string;
  roomId: string;
  /** The event's position in the room's log. */
  position: number;
  eventId: string;
  /** The thread root's event ID, or `main`. */
  threadId: string;
  highlight: boolean;
  actions: PushAction[];
  /** When it was notified (the event's origin_server_ts). */
  ts: number;
}

/** A user's own event in a room: an implicit read receipt up to it. */
export interface OwnEventMark {
  userId: string;
  roomId: string;
  threadId: string;
  position: number;
}

/** Counts for a room or a thread, as /sync shows them. */
export interface UnreadCounts {
  notification_count: number;
  highlight_count: number;
}

/**
 * A room's unread counts: the totals (every thread included), the main timeline's own, and
 * each thread's (threads without unread notifications are absent).
 */
export interface RoomUnreadCounts extends UnreadCounts {
  main: UnreadCounts;
  threads: Record<string, UnreadCounts>;
}

/** Notification counts per room; the sync service reads them. */
export interface NotificationCounts {
  /** Counts for each of `roomIds` since the user's read receipts (zero counts included). */
  countsFor(userId: string, roomIds: readonly string[]): Promise<Map<string, RoomUnreadCounts>>;
}

/** A page of a user's notifications, newest first. */
export interface NotificationPage {
  entries: NotificationEntry[];
  /** Cursor for the next (older) page; absent at the end. */
  next?: string;
}

/** Notification storage. */
export interface NotificationStore {
  /**
   * The records of `entries` (count record and GET /notifications index, two per entry) and the
   * sender's `own` mark, for the event's commit.
   */
  mutations(entries: readonly NotificationEntry[], own?: OwnEventMark): CommitMutation[];
  /** After the event's commit: the records of `entries` that did not fit in it. */
  write(entries: readonly NotificationEntry[]): Promise<void>;
  /** A user's notifications in a room after `position`, oldest first, at most `limit`. */
  after(
    userId: string,
    roomId: string,
    position: number,
    limit: number,
  ): Promise<NotificationEntry[]>;
  /** The user's latest own-event position per thread in a room. */
  ownEvents(userId: string, roomId: string): Promise<Map<string, number>>;
  /** The user's notifications across rooms, newest first, from the cursor `from`. */
  page(
    userId: string,
    options: { from?: string; limit: number; onlyHighlight: boolean },
  ): Promise<NotificationPage>;
}
