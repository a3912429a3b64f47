/**
 * Unread notification counts, derived on read from the notification log and the user's read
 * points: the latest read receipt (public or private, unthreaded or for the thread) and the
 * user's own latest event, which counts as a receipt (in the main timeline: for the whole room).
 */
import {
  MAIN_THREAD,
  type NotificationCounts,
  type NotificationStore,
  type RoomUnreadCounts,
  type UnreadCounts,
} from "../ports/notification_store.ts";
import type { ReceiptReader } from "../ports/receipt_store.ts";

/**
 * Most notifications counted per room and read; beyond it counts stop growing. Clients show
 * large counts as "99+" and the cost of a count grows with it.
 */
export const MAX_COUNTED = 5_000;
const BEFORE_EVERYTHING = Number.MIN_SAFE_INTEGER;

/** Counts and read points over the notification store and receipts. */
export class NotificationCountService implements NotificationCounts {
  /** `receipts` may be absent until the receipts area is wired: then only own events count. */
  constructor(
    private readonly notifications: NotificationStore,
    private readonly receipts?: ReceiptReader,
  ) {}

  async countsFor(
    userId: string,
    roomIds: readonly string[],
  ): Promise<Map<string, RoomUnreadCounts>> {
    const counts = await Promise.all(roomIds.map((roomId) => this.roomCounts(userId, roomId)));
    return new Map(roomIds.map((roomId, i) => [roomId, counts[i]]));
  }

  /** One room's counts. */
  async roomCounts(userId: string, roomId: string): Promise<RoomUnreadCounts> {
    const points = await this.readPoints(userId, roomId);
    const base = await points.unthreaded();
    const entries = await this.notifications.after(userId, roomId, base, MAX_COUNTED);
    const result: RoomUnreadCounts = {
      notification_count: 0,
      highlight_count: 0,
      main: zero(),
      threads: {},
    };
    const threads = [...new Set(entries.map((e) => e.threadId))];
    const threadPoints = new Map(
      await Promise.all(threads.map(async (t) => [t, await points.thread(t)] as const)),
    );
    for (const entry of entries) {
      if (entry.position <= threadPoints.get(entry.threadId)!) continue;
      const bucket = entry.threadId === MAIN_THREAD
        ? result.main
        : (result.threads[entry.threadId] ??= zero());
      bucket.notification_count++;
      result.notification_count++;
      if (entry.highlight) {
        bucket.highlight_count++;
        result.highlight_count++;
      }
    }
    return result;
  }

  /**
   * The user's read points in a room: `unthreaded()` is where everything before is read,
   * `thread(t)` where everything of thread `t` (or `main`) before is read. Reads are shared.
   */
  async readPoints(userId: string, roomId: string): Promise<{
    unthreaded(): Promise<number>;
    thread(threadId: string): Promise<number>;
  }> {
    const receipts = this.receipts;
    const [own, receipt] = await Promise.all([
      this.notifications.ownEvents(userId, roomId),
      receipts?.latestReceipt(userId, roomId) ?? null,
    ]);
    const unthreaded = Math.max(
      receipt?.position ?? BEFORE_EVERYTHING,
      own.get(MAIN_THREAD) ?? BEFORE_EVERYTHING,
    );
    return {
      unthreaded: () => Promise.resolve(unthreaded),
      thread: async (threadId) => {
        const threaded = await receipts?.latestReceipt(userId, roomId, threadId);
        return Math.max(
          unthreaded,
          threaded?.position ?? BEFORE_EVERYTHING,
          own.get(threadId) ?? BEFORE_EVERYTHING,
        );
      },
    };
  }
}

function zero(): UnreadCounts {
  return { notification_count: 0, highlight_count: 0 };
}
