/** Timeline pagination over a room's log, by position, in either direction. */
import type { Direction, StoredEvent, TimelinePage } from "../domain/ports/event_store.ts";
import { decodeLogEntry } from "./event_reads.ts";
import type { StoreContext } from "./store_context.ts";
import type { LogEntry, RoomHead } from "./store_records.ts";
import { FIRST_FORWARD_POSITION } from "./store_records.ts";
import { parseSyncToken, parseTimelineToken, timelineToken } from "./stream_tokens.ts";

/**
 * A page of accepted events. A token is a boundary: walking "b" from it returns positions
 * below it, walking "f" returns positions from it up.
 */
export async function readTimeline(
  ctx: StoreContext,
  roomId: string,
  options: { from?: string; to?: string; dir: Direction; limit: number },
): Promise<TimelinePage> {
  const limit = Math.max(1, Math.min(options.limit, 1000));
  const to = options.to === undefined ? undefined : parseTimelineToken(options.to);
  let from: number;
  if (options.from !== undefined && !options.from.startsWith("s")) {
    from = parseTimelineToken(options.from);
  } else {
    const since = options.from === undefined ? "" : parseSyncToken(options.from);
    const head = (await ctx.kv.get<RoomHead>(ctx.keys.head(roomId))).value;
    const liveEnd = (head?.last ?? FIRST_FORWARD_POSITION - 1) + 1;
    if (since !== "") {
      // A sync token (clients pass next_batch, as the spec allows) is the boundary after the
      // last event that sync saw: forwards gives what arrived since, backwards what it saw.
      from = await firstPositionAfter(ctx, roomId, since, liveEnd);
    } else {
      from = options.dir === "b" ? liveEnd : head?.first ?? FIRST_FORWARD_POSITION;
    }
  }
  const prefix = ctx.keys.logPrefix(roomId);
  const boundary = ctx.keys.log(roomId, from);
  const iter = options.dir === "b"
    ? ctx.kv.list<LogEntry>({ prefix, end: boundary }, { reverse: true, batchSize: limit + 10 })
    : ctx.kv.list<LogEntry>({ prefix, start: boundary }, { batchSize: limit + 10 });
  const picked: Deno.KvEntry<LogEntry>[] = [];
  let exhausted = true;
  for await (const entry of iter) {
    if (to !== undefined) {
      const position = entry.key[entry.key.length - 1] as number;
      if (options.dir === "b" ? position < to : position >= to) break;
    }
    if (entry.value.status !== "accepted") continue;
    picked.push(entry);
    if (picked.length === limit) {
      exhausted = false;
      break;
    }
  }
  const events = await Promise.all(picked.map((e) => toStored(ctx, roomId, e)));
  const page: TimelinePage = { events, start: timelineToken(from) };
  if (!exhausted) {
    const last = events[events.length - 1].position;
    page.end = timelineToken(options.dir === "b" ? last : last + 1);
  }
  return page;
}

/**
 * The lowest forward position committed after `versionstamp` (`liveEnd` when none is), by
 * bisection: forward positions are appended in commit order, so their versionstamps grow with
 * them, and log2(room length) reads place an old sync token as cheaply as a recent one.
 */
export async function firstPositionAfter(
  ctx: StoreContext,
  roomId: string,
  versionstamp: string,
  liveEnd: number,
): Promise<number> {
  let lo = FIRST_FORWARD_POSITION;
  let hi = liveEnd;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const iter = ctx.kv.list<LogEntry>({
      prefix: ctx.keys.logPrefix(roomId),
      start: ctx.keys.log(roomId, mid),
    }, { limit: 1 });
    let found: Deno.KvEntry<LogEntry> | undefined;
    for await (const entry of iter) found = entry;
    const position = found ? found.key[found.key.length - 1] as number : liveEnd;
    if (found === undefined || position >= hi) hi = mid;
    else if (found.versionstamp > versionstamp) hi = position;
    else lo = position + 1;
  }
  return lo;
}

/** Decode a listed log entry. */
export function toStored(
  ctx: StoreContext,
  roomId: string,
  entry: Deno.KvEntry<LogEntry>,
): Promise<StoredEvent> {
  const position = entry.key[entry.key.length - 1] as number;
  return decodeLogEntry(ctx, roomId, position, entry.value, entry.versionstamp);
}
