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
  /** The event's position in the room's log, so "later" is cheap to decide. */
  position: number;
  /** When the receipt was sent (ms since the epoch). */
  ts: number;
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
   * Store a receipt unless the user already has one of that type and thread at a later
   * position. Returns the commit versionstamp, or null when nothing was written.
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
