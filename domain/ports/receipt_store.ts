/**
 * The storage port for receipts: each user's latest receipt per room, type and thread, and a
 * per-room change index ordered by commit versionstamp for sync (`since`/`upTo` are sync tokens).
 */

/** Receipt types clients send; `m.fully_read` is a read marker and is stored as account data. */
export type ReceiptType = "m.read" | "m.read.private";

/** One receipt as stored. `threadId` is absent for unthreaded receipts. */
export interface Receipt {
  roomId: string;
  userId: string;
  receiptType: ReceiptType;
  threadId?: string;
  eventId: string;
  /**
   * The event's position in the room's log, so "later" is cheap to decide;
   * `UNKNOWN_EVENT_POSITION` for a remote user's receipt naming an event we do not hold.
   */
  position: number;
  /** When the receipt was sent (ms since the epoch). */
  ts: number;
}

/**
 * The position of a receipt another server sent for an event this server does not hold (yet):
 * kept, as Synapse keeps it, because the event often arrives later (a gap being filled) and
 * clients show the receipt as soon as they have the event. Below every real position (backfill
 * counts down from the room's first), so it never counts as "read up to here".
 */
export const UNKNOWN_EVENT_POSITION = Number.NEGATIVE_INFINITY;

/**
 * Whether `next` replaces `current` (same user, room, type and thread). Receipts move forward,
 * as clients racing on several devices expect; one for the same event changes nothing (a
 * retried EDU). Where either event is unknown the order cannot be told: the newer receipt wins,
 * as in Synapse (a server sends its users' receipts in the order they moved).
 */
export function receiptSupersedes(current: Receipt | null, next: Receipt): boolean {
  if (current === null) return true;
  if (current.eventId === next.eventId) return false;
  if (current.position === UNKNOWN_EVENT_POSITION || next.position === UNKNOWN_EVENT_POSITION) {
    return true;
  }
  return next.position > current.position;
}

/** Who reads the latest receipts (the push engineer's unread counts). */
export interface ReceiptReader {
  /**
   * The user's latest read receipt (public or private) in a room by event position: among
   * unthreaded receipts, plus receipts for `threadId` when given. Null when none.
   */
  latestReceipt(userId: string, roomId: string, threadId?: string): Promise<Receipt | null>;
}

/** Receipt storage. */
export interface ReceiptStore extends ReceiptReader {
  /** One stored receipt; null when unset. */
  get(
    userId: string,
    roomId: string,
    receiptType: ReceiptType,
    threadId?: string,
  ): Promise<Receipt | null>;
  /**
   * Store a receipt when it supersedes the user's current one of that type and thread
   * (`receiptSupersedes`). Returns the commit versionstamp, or null when nothing was written.
   */
  put(receipt: Receipt): Promise<string | null>;
  /**
   * Receipts changed in each room after `since` (all current receipts when absent) and not
   * after `upTo`; rooms without changes are absent.
   */
  changes(
    roomIds: readonly string[],
    options: { since?: string; upTo: string },
  ): Promise<Map<string, Receipt[]>>;
}
