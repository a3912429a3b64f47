/**
 * Replay: rebuild every projection from the log, through the same planner the live append
 * path uses, into a fresh database or key namespace; then compare the rebuilt maps with the
 * live ones entry by entry. Each room's events are re-appended in their original arrival order
 * (the log's seq), merging its forward run (positions going up) with its backfill run
 * (positions going down), so positions, state groups and extremities come out identical.
 *
 * Outliers and staged states are facts, like accounts: before any room is rebuilt, every outlier
 * is stored again and every staged state is staged again from the state its layers hold (so a
 * layer altered in place comes out under another content address and shows as a difference),
 * and an event appended with a staged state (its log entry names it) is re-appended with it.
 */
import { isDeepStrictEqual } from "node:util";
import type { NewEvent, StateResolver } from "../domain/ports/event_store.ts";
import { CHUNK_BYTES } from "./chunked_value.ts";
import { decodeLogEntry } from "./event_reads.ts";
import { readOutliers } from "./outlier_store.ts";
import { loadGroupState } from "./state_groups.ts";
import { compareKeys } from "./key_order.ts";
import { KvEventStore } from "./kv_event_store.ts";
import { type EventStoreMap, REPLAYED_MAPS } from "./schema.ts";
import { createStoreContext, type StoreContext } from "./store_context.ts";
import {
  FIRST_FORWARD_POSITION,
  type LogEntry,
  type OutlierRecord,
  type RoomHead,
  type StagedStateRecord,
} from "./store_records.ts";

/**
 * Appends one room keeps queued. Each event is its own request, so the event log folds as many
 * as fit one commit by KV's limits (its group commit, the live path's own budget) and never
 * sees a request too large to commit; two batches queued keep its batches full.
 */
const QUEUED_PER_ROOM = 128;
/** PDU bytes one room keeps queued: two commits' worth, so rooms of large events stay bounded. */
const QUEUED_BYTES_PER_ROOM = 2 * 1024 * 1024;

/** Progress of a replay run. */
export interface ReplayProgress {
  phase: "rebuild" | "compare";
  rooms: number;
  roomsDone: number;
  events: number;
  eventsDone: number;
}

/** One entry that differs between the live and the rebuilt projections. */
export interface ReplayDifference {
  map: EventStoreMap;
  /** Key without the namespace. */
  key: Deno.KvKey;
  /** undefined when the entry is missing on that side. */
  live: unknown;
  rebuilt: unknown;
}

/** What replay found. */
export interface ReplayReport {
  rooms: number;
  events: number;
  /** The first differences (up to `maxDifferences`). */
  differences: ReplayDifference[];
  differenceCount: number;
}

/** Where to read the live store and where to rebuild it. */
export interface ReplayOptions {
  source: Deno.Kv;
  sourceNamespace?: Deno.KvKey;
  /** Must hold nothing under `targetNamespace`. */
  target: Deno.Kv;
  targetNamespace?: Deno.KvKey;
  /** Must be the resolver the live store used (default: the real one). */
  resolver?: StateResolver;
  onProgress?: (progress: ReplayProgress) => void;
  /** Rooms rebuilt at once. */
  concurrency?: number;
  maxDifferences?: number;
}

/** Rebuild into the target, compare with the source, and report the differences. */
export async function replay(options: ReplayOptions): Promise<ReplayReport> {
  const source = createStoreContext(options.source, {
    resolver: options.resolver,
    namespace: options.sourceNamespace,
  });
  const targetNamespace = options.targetNamespace ?? [];
  if (options.target === options.source && samePrefix(source.keys.namespace, targetNamespace)) {
    throw new Error("replay needs a fresh database or another namespace to rebuild into");
  }
  for await (const _ of options.target.list({ prefix: targetNamespace }, { limit: 1 })) {
    throw new Error("the replay target is not empty");
  }
  const target = new KvEventStore(options.target, {
    resolver: options.resolver,
    namespace: targetNamespace,
  });

  await copyFacts(source, target);

  const heads: { roomId: string; head: RoomHead }[] = [];
  for await (const entry of source.kv.list<RoomHead>({ prefix: source.keys.map("roomid_head") })) {
    heads.push({ roomId: entry.key[entry.key.length - 1] as string, head: entry.value });
  }
  const progress: ReplayProgress = {
    phase: "rebuild",
    rooms: heads.length,
    roomsDone: 0,
    events: heads.reduce((n, h) => n + h.head.seq, 0),
    eventsDone: 0,
  };
  const queue = [...heads];
  const workers = Array.from({ length: options.concurrency ?? 8 }, async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      await rebuildRoom(source, target, next.roomId, next.head, (n) => {
        progress.eventsDone += n;
        options.onProgress?.({ ...progress });
      });
      progress.roomsDone++;
    }
  });
  await Promise.all(workers);

  progress.phase = "compare";
  options.onProgress?.({ ...progress });
  const maxDifferences = options.maxDifferences ?? 100;
  const differences: ReplayDifference[] = [];
  let differenceCount = 0;
  for (const map of REPLAYED_MAPS) {
    const found = compareMap(source, target.ctx, map);
    for await (const difference of found) {
      differenceCount++;
      if (differences.length < maxDifferences) differences.push(difference);
    }
  }
  return { rooms: progress.rooms, events: progress.events, differences, differenceCount };
}

function samePrefix(a: Deno.KvKey, b: Deno.KvKey): boolean {
  return a.length === b.length && compareKeys(a, b) === 0;
}

/**
 * Re-append one room's log in arrival order, one request per event. Folding a fixed number of
 * events into one request overran a commit's limits as soon as the events were large (about 13
 * events near 64 KiB fill 800 KiB) or cited long user IDs (80 KiB of keys); the live path had
 * accepted them one commit at a time.
 */
async function rebuildRoom(
  source: StoreContext,
  target: KvEventStore,
  roomId: string,
  head: RoomHead,
  onEvents: (count: number) => void,
): Promise<void> {
  const prefix = source.keys.logPrefix(roomId);
  const boundary = source.keys.log(roomId, FIRST_FORWARD_POSITION);
  const forward = source.kv.list<LogEntry>({ prefix, start: boundary }, { batchSize: 500 });
  const backward = source.kv.list<LogEntry>({ prefix, end: boundary }, {
    reverse: true,
    batchSize: 500,
  });
  let f = await forward.next();
  let b = await backward.next();
  // Appends to one room commit in queue order, so waiting for the oldest bounds the queue.
  const queued: { done: Promise<void>; bytes: number }[] = [];
  let queuedBytes = 0;
  let failure: { error: unknown } | undefined;
  const enqueue = (event: NewEvent, backfill: boolean, bytes: number) => {
    const request = { roomId, events: [event], backfill, roomVersion: head.room_version };
    const done = target.append(request).then(() => onEvents(1), (error) => {
      failure ??= { error };
    });
    queued.push({ done, bytes });
    queuedBytes += bytes;
  };
  while ((!f.done || !b.done) && !failure) {
    const takeBackfill = f.done || (!b.done && b.value.value.seq < f.value.value.seq);
    const entry = takeBackfill ? b.value! : f.value!;
    const position = entry.key[entry.key.length - 1] as number;
    const event = await decodeLogEntry(source, roomId, position, entry.value, entry.versionstamp);
    const bytes = entry.value.pdu.byteLength + (entry.value.chunks - 1) * CHUNK_BYTES;
    const input: NewEvent = { eventId: event.eventId, pdu: event.pdu, status: event.status };
    const staged = entry.value.state_before;
    if (staged !== undefined) input.stateBefore = { roomId, id: staged, entries: 0 };
    enqueue(input, takeBackfill, bytes);
    if (takeBackfill) b = await backward.next();
    else f = await forward.next();
    while (queued.length >= QUEUED_PER_ROOM || queuedBytes > QUEUED_BYTES_PER_ROOM) {
      const oldest = queued.shift()!;
      await oldest.done;
      queuedBytes -= oldest.bytes;
    }
  }
  await Promise.all(queued.map((q) => q.done));
  if (failure) throw failure.error;
}

/**
 * Store every outlier and stage every staged state of the source again in the target, through
 * the live write paths; the comparison then checks them like projections.
 */
async function copyFacts(source: StoreContext, target: KvEventStore): Promise<void> {
  const outliers = source.kv.list<OutlierRecord>({ prefix: source.keys.map("eventid_outlier") }, {
    batchSize: 500,
  });
  let ids: string[] = [];
  const flush = async () => {
    const found = await readOutliers(source, ids);
    const byRoom = new Map<string, NewEvent[]>();
    for (const e of found.values()) {
      const list = byRoom.get(e.roomId) ?? [];
      list.push({ eventId: e.eventId, pdu: e.pdu, status: e.status });
      byRoom.set(e.roomId, list);
    }
    for (const [roomId, events] of byRoom) await target.storeOutliers(roomId, events);
    ids = [];
  };
  for await (const entry of outliers) {
    ids.push(entry.key[entry.key.length - 1] as string);
    if (ids.length >= 200) await flush();
  }
  await flush();
  const staged = source.kv.list<StagedStateRecord>({
    prefix: source.keys.map("roomid_stagedstate"),
  });
  for await (const entry of staged) {
    const roomId = entry.key[entry.key.length - 2] as string;
    const stagedId = entry.key[entry.key.length - 1] as string;
    const state = await loadGroupState(source, roomId, entry.value.top);
    const restaged = await target.stageState(roomId, entry.value.room_version, new Map(state));
    if (restaged.id !== stagedId) {
      // Its layers no longer hold the state it was named for: keep the name pointing at what
      // they hold now, so the room still rebuilds, and let the comparison report the mismatch.
      const record = await target.ctx.kv.get(target.ctx.keys.stagedState(roomId, restaged.id));
      await target.ctx.kv.set(target.ctx.keys.stagedState(roomId, stagedId), record.value);
    }
  }
}

/** Merge-join one map of both stores and yield every entry that differs. */
async function* compareMap(
  live: StoreContext,
  rebuilt: StoreContext,
  map: EventStoreMap,
): AsyncGenerator<ReplayDifference> {
  const liveIter = live.kv.list({ prefix: live.keys.map(map) }, { batchSize: 1000 });
  const rebuiltIter = rebuilt.kv.list({ prefix: rebuilt.keys.map(map) }, { batchSize: 1000 });
  const liveSkip = live.keys.namespace.length;
  const rebuiltSkip = rebuilt.keys.namespace.length;
  let l = await liveIter.next();
  let r = await rebuiltIter.next();
  while (!l.done || !r.done) {
    const lKey = l.done ? undefined : l.value.key.slice(liveSkip);
    const rKey = r.done ? undefined : r.value.key.slice(rebuiltSkip);
    const order = lKey === undefined ? 1 : rKey === undefined ? -1 : compareKeys(lKey, rKey);
    if (order < 0) {
      yield { map, key: lKey!, live: l.value!.value, rebuilt: undefined };
      l = await liveIter.next();
    } else if (order > 0) {
      yield { map, key: rKey!, live: undefined, rebuilt: r.value!.value };
      r = await rebuiltIter.next();
    } else {
      if (!isDeepStrictEqual(l.value!.value, r.value!.value)) {
        yield { map, key: lKey!, live: l.value!.value, rebuilt: r.value!.value };
      }
      l = await liveIter.next();
      r = await rebuiltIter.next();
    }
  }
}
