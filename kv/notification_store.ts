/**
 * Notifications in KV, written by blind sets in the commit of the event that caused them: under
 * (user, room, position) for unread counts (which list the entries after the user's read point),
 * and under (user, ts, room, position) for GET /notifications. Nothing is ever incremented, so
 * retried or replanned commits cannot make counts drift.
 */
import { invalidParam } from "../domain/errors.ts";
import type { CommitMutation } from "../domain/ports/event_store.ts";
import type {
  NotificationEntry,
  NotificationPage,
  NotificationStore,
  OwnEventMark,
} from "../domain/ports/notification_store.ts";
import type { PushAction } from "../domain/push/push_rules.ts";
import { estimateKeyBytes, KV_LIMITS } from "./commit_budget.ts";
import { pushKeys } from "./schema.ts";

/** Records written per commit by `write`, within KV's 1,000 mutations. */
const WRITES_PER_COMMIT = 500;
/** Most entries a page walks when filtering on highlights, so one request stays bounded. */
const MAX_PAGE_SCAN = 5_000;

interface RoomRecord {
  e: string;
  t: string;
  h: boolean;
}

interface UserRecord extends RoomRecord {
  a: PushAction[];
}

// Our keys never hold symbols, which is all that separates KvKey from the port's key type.
type CommitKey = CommitMutation["key"];

/** The KV adapter of the notification store. */
export class KvNotificationStore implements NotificationStore {
  /** A store over an open KV database. */
  constructor(private readonly kv: Deno.Kv) {}

  mutations(entries: readonly NotificationEntry[], own?: OwnEventMark): CommitMutation[] {
    const out: CommitMutation[] = records(entries).map(([key, value]) => ({
      op: "set",
      key: key as CommitKey,
      value,
    }));
    if (own) {
      out.push({
        op: "set",
        key: pushKeys.ownEvent(own.userId, own.roomId, own.threadId) as CommitKey,
        value: own.position,
      });
    }
    return out;
  }

  async write(entries: readonly NotificationEntry[]): Promise<void> {
    let atomic = this.kv.atomic();
    let count = 0;
    let keyBytes = 0;
    for (const [key, value] of records(entries)) {
      const bytes = estimateKeyBytes(key);
      // Long user IDs fill the key budget before the mutation count.
      if (count === WRITES_PER_COMMIT || keyBytes + bytes > KV_LIMITS.keyBytes) {
        await atomic.commit();
        atomic = this.kv.atomic();
        count = 0;
        keyBytes = 0;
      }
      atomic.set(key, value);
      count++;
      keyBytes += bytes;
    }
    if (count > 0) await atomic.commit();
  }

  async after(
    userId: string,
    roomId: string,
    position: number,
    limit: number,
  ): Promise<NotificationEntry[]> {
    const prefix = pushKeys.roomNotificationPrefix(userId, roomId);
    const out: NotificationEntry[] = [];
    const iter = this.kv.list<RoomRecord>(
      { prefix, start: pushKeys.roomNotification(userId, roomId, Math.floor(position) + 1) },
      { limit, batchSize: Math.min(Math.max(limit, 1), 1000) },
    );
    for await (const entry of iter) {
      const v = entry.value;
      const pos = entry.key[entry.key.length - 1] as number;
      out.push({
        userId,
        roomId,
        position: pos,
        eventId: v.e,
        threadId: v.t,
        highlight: v.h,
        actions: [],
        ts: 0,
      });
    }
    return out;
  }

  async ownEvents(userId: string, roomId: string): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for await (
      const entry of this.kv.list<number>({ prefix: pushKeys.ownEventPrefix(userId, roomId) })
    ) {
      out.set(entry.key[entry.key.length - 1] as string, entry.value);
    }
    return out;
  }

  async page(
    userId: string,
    options: { from?: string; limit: number; onlyHighlight: boolean },
  ): Promise<NotificationPage> {
    const prefix = pushKeys.userNotificationPrefix(userId);
    const selector: Deno.KvListSelector = options.from === undefined ? { prefix } : {
      prefix,
      end: cursorKey(userId, options.from),
    };
    const entries: NotificationEntry[] = [];
    let scanned = 0;
    let lastKey: Deno.KvKey | undefined;
    const iter = this.kv.list<UserRecord>(selector, { reverse: true, batchSize: 100 });
    for await (const entry of iter) {
      if (entries.length === options.limit || scanned === MAX_PAGE_SCAN) {
        return { entries, next: cursorOf(lastKey!) };
      }
      scanned++;
      lastKey = entry.key;
      const v = entry.value;
      if (options.onlyHighlight && !v.h) continue;
      const [, , ts, roomId, position] = entry.key as [string, string, number, string, number];
      entries.push({
        userId,
        roomId,
        position,
        eventId: v.e,
        threadId: v.t,
        highlight: v.h,
        actions: v.a,
        ts,
      });
    }
    return { entries };
  }
}

/** Both records of each entry: the count record and the GET /notifications index. */
function records(entries: readonly NotificationEntry[]): [Deno.KvKey, RoomRecord | UserRecord][] {
  const out: [Deno.KvKey, RoomRecord | UserRecord][] = [];
  for (const n of entries) {
    const room: RoomRecord = { e: n.eventId, t: n.threadId, h: n.highlight };
    out.push(
      [pushKeys.roomNotification(n.userId, n.roomId, n.position), room],
      [pushKeys.userNotification(n.userId, n.ts, n.roomId, n.position), { ...room, a: n.actions }],
    );
  }
  return out;
}

/** Cursor `ts_position_roomId` naming the last key a page returned or walked. */
function cursorOf(key: Deno.KvKey): string {
  const [, , ts, roomId, position] = key as [string, string, number, string, number];
  return `${ts}_${position}_${roomId}`;
}

function cursorKey(userId: string, cursor: string): Deno.KvKey {
  const m = /^(\d{1,16})_(-?\d{1,16})_(.+)$/.exec(cursor);
  if (!m) throw invalidParam("Invalid 'from' token");
  return pushKeys.userNotification(userId, Number(m[1]), m[3], Number(m[2]));
}
