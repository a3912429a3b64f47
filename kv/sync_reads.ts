/**
 * "What changed since token T" for sync. Tokens are KV versionstamps. A read first takes a
 * barrier: a blind write whose commit versionstamp V is newer than every commit visible to the
 * reads that follow, so returning exactly the entries in (T, V] and V as the next token
 * neither misses an entry still landing nor repeats one. Rooms that changed are found from
 * their heads (rewritten by every append), ten per getMany; then each changed room's log is
 * walked back from its end until an entry is not newer than T.
 */
import { getManyChunked } from "./get_many.ts";
import type { RoomChanges, StoredEvent, SyncChanges } from "../domain/ports/event_store.ts";
import { readRoomsOfUser } from "./state_reads.ts";
import type { StoreContext } from "./store_context.ts";
import type { LogEntry, RoomHead } from "./store_records.ts";
import { FIRST_FORWARD_POSITION } from "./store_records.ts";
import { parseSyncToken, syncToken, timelineToken } from "./stream_tokens.ts";
import { toStored } from "./timeline_reads.ts";

/** Take the barrier: a blind write of the user's last sync time; returns its token. */
export async function takeSyncBarrier(ctx: StoreContext, userId: string): Promise<string> {
  const result = await ctx.kv.set(ctx.keys.syncBarrier(userId), Date.now());
  return syncToken(result.versionstamp);
}

/**
 * Accepted events in the rooms newer than `since` (all when absent) and not newer than `upTo`;
 * rooms without any are left out.
 */
export async function readRoomChanges(
  ctx: StoreContext,
  options: { roomIds: readonly string[]; since?: string; upTo: string; limit: number },
): Promise<RoomChanges[]> {
  const since = options.since === undefined ? null : parseSyncToken(options.since);
  const upTo = parseSyncToken(options.upTo);
  const limit = Math.max(1, options.limit);
  const roomIds = [...new Set(options.roomIds)];
  const changed: { roomId: string; head: RoomHead }[] = [];
  const heads = await getManyChunked<RoomHead>(ctx.kv, roomIds.map((id) => ctx.keys.head(id)));
  heads.forEach((head, j) => {
    if (head.value && (since === null || head.versionstamp > since)) {
      changed.push({ roomId: roomIds[j], head: head.value });
    }
  });
  const rooms = await Promise.all(
    changed.map(({ roomId, head }) => roomWindow(ctx, roomId, head, since, upTo, limit)),
  );
  return rooms
    .filter((room) => room.events.length > 0)
    .sort((a, b) => (a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0));
}

/** One room's accepted events in (since, upTo], the newest `limit` of them, oldest first. */
async function roomWindow(
  ctx: StoreContext,
  roomId: string,
  head: RoomHead,
  since: string | null,
  upTo: string,
  limit: number,
): Promise<RoomChanges> {
  const picked: Deno.KvEntry<LogEntry>[] = [];
  let limited = false;
  // Forward positions are committed in order, so versionstamps only grow along the log.
  const iter = ctx.kv.list<LogEntry>({ prefix: ctx.keys.logPrefix(roomId) }, {
    reverse: true,
    batchSize: Math.min(limit + 10, 500),
  });
  for await (const entry of iter) {
    if (entry.versionstamp > upTo) continue;
    if (since !== null && entry.versionstamp <= since) break;
    if (entry.value.status !== "accepted") continue;
    if (picked.length === limit) {
      limited = true;
      break;
    }
    picked.push(entry);
  }
  picked.reverse();
  const events: StoredEvent[] = await Promise.all(picked.map((e) => toStored(ctx, roomId, e)));
  const before = events.length > 0
    ? events[0].position
    : Math.max(head.last, FIRST_FORWARD_POSITION - 1) + 1;
  return { roomId, events, limited, prevBatch: timelineToken(before) };
}

/** Barrier, then the changes in the user's rooms (or `roomIds`). */
export async function readSyncChanges(
  ctx: StoreContext,
  options: { userId: string; since?: string; limit: number; roomIds?: readonly string[] },
): Promise<SyncChanges> {
  if (options.since !== undefined) parseSyncToken(options.since);
  const upTo = await takeSyncBarrier(ctx, options.userId);
  const roomIds = options.roomIds ??
    (await readRoomsOfUser(ctx, options.userId)).map((m) => m.roomId);
  const rooms = await readRoomChanges(ctx, {
    roomIds,
    since: options.since,
    upTo,
    limit: options.limit,
  });
  return { nextBatch: upTo, rooms };
}
