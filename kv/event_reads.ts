/**
 * Reads of single events and their index records, with the caches the append path and the
 * public reads share. Events are immutable once appended, so caching them is always safe.
 */
import { getManyChunked } from "./get_many.ts";
import type { Pdu } from "../domain/protocol/events.ts";
import type { StoredEvent } from "../domain/ports/event_store.ts";
import { decodeJson, readChunks } from "./chunked_value.ts";
import type { StoreContext } from "./store_context.ts";
import type { EventPositionRecord, EventStateGroups, LogEntry } from "./store_records.ts";

/** Where an event sits in the log; null when unknown. */
export async function readEventPosition(
  ctx: StoreContext,
  eventId: string,
): Promise<EventPositionRecord | null> {
  const cached = ctx.events.get(eventId);
  if (cached) return { room_id: cached.roomId, position: cached.position };
  return (await ctx.kv.get<EventPositionRecord>(ctx.keys.eventPosition(eventId))).value;
}

/** Decode a log entry into a stored event, fetching continuation chunks when there are any. */
export async function decodeLogEntry(
  ctx: StoreContext,
  roomId: string,
  position: number,
  entry: LogEntry,
  versionstamp: string,
): Promise<StoredEvent> {
  const cached = ctx.events.get(entry.event_id);
  if (cached) return cached;
  const bytes = await readChunks(
    ctx.kv,
    entry.pdu,
    entry.chunks,
    ctx.keys.pduChunkPrefix(entry.event_id),
  );
  const event: StoredEvent = {
    eventId: entry.event_id,
    roomId,
    pdu: decodeJson<Pdu>(bytes),
    status: entry.status,
    position,
    versionstamp,
  };
  ctx.events.set(event.eventId, event);
  return event;
}

/** An event by ID with its status and position; null when unknown. */
export async function readStoredEvent(
  ctx: StoreContext,
  eventId: string,
): Promise<StoredEvent | null> {
  const cached = ctx.events.get(eventId);
  if (cached) return cached;
  const position = await readEventPosition(ctx, eventId);
  if (!position) return null;
  const entry = await ctx.kv.get<LogEntry>(ctx.keys.log(position.room_id, position.position));
  if (!entry.value) throw new Error(`log entry of ${eventId} is missing`);
  return await decodeLogEntry(
    ctx,
    position.room_id,
    position.position,
    entry.value,
    entry.versionstamp,
  );
}

/** Many events by ID: the position index, then the log entries, each read in parallel chunks. */
export async function readStoredEvents(
  ctx: StoreContext,
  eventIds: readonly string[],
): Promise<Map<string, StoredEvent>> {
  const found = new Map<string, StoredEvent>();
  const missing: string[] = [];
  for (const id of new Set(eventIds)) {
    const cached = ctx.events.get(id);
    if (cached) found.set(id, cached);
    else missing.push(id);
  }
  const positions = await getManyChunked<EventPositionRecord>(
    ctx.kv,
    missing.map((id) => ctx.keys.eventPosition(id)),
  );
  const known = positions.flatMap((p) => (p.value ? [p.value] : []));
  const entries = await getManyChunked<LogEntry>(
    ctx.kv,
    known.map((p) => ctx.keys.log(p.room_id, p.position)),
  );
  await Promise.all(entries.map(async (entry, j) => {
    if (!entry.value) throw new Error(`log entry at ${JSON.stringify(entry.key)} is missing`);
    const event = await decodeLogEntry(
      ctx,
      known[j].room_id,
      known[j].position,
      entry.value,
      entry.versionstamp,
    );
    found.set(event.eventId, event);
  }));
  return found;
}

/** The state groups around an event; null when unknown. */
export async function readEventStateGroups(
  ctx: StoreContext,
  eventId: string,
): Promise<EventStateGroups | null> {
  const cached = ctx.eventGroups.get(eventId);
  if (cached) return cached;
  const entry = await ctx.kv.get<EventStateGroups>(ctx.keys.eventStateGroups(eventId));
  if (entry.value) ctx.eventGroups.set(eventId, entry.value);
  return entry.value;
}

/** What planning needs of an earlier event: its room, and the state groups around it. */
export interface EventPlacement {
  roomId: string;
  /** null when the event is indexed but its state groups are not (a broken store). */
  groups: EventStateGroups | null;
}

/**
 * Room and state groups of many events, from the caches or from KV: the position index and
 * group records only, never the log entries, read in parallel chunks.
 * An unknown event maps to null.
 */
export async function readEventPlacements(
  ctx: StoreContext,
  eventIds: readonly string[],
): Promise<Map<string, EventPlacement | null>> {
  const rooms = new Map<string, string | null>();
  const groups = new Map<string, EventStateGroups | null>();
  const wanted: { id: string; key: Deno.KvKey; kind: "position" | "groups" }[] = [];
  for (const id of new Set(eventIds)) {
    const roomId = ctx.events.get(id)?.roomId;
    if (roomId !== undefined) rooms.set(id, roomId);
    else wanted.push({ id, key: ctx.keys.eventPosition(id), kind: "position" });
    const cached = ctx.eventGroups.get(id);
    if (cached) groups.set(id, cached);
    else wanted.push({ id, key: ctx.keys.eventStateGroups(id), kind: "groups" });
  }
  const entries = await getManyChunked<unknown>(ctx.kv, wanted.map((w) => w.key));
  entries.forEach((entry, j) => {
    const { id, kind } = wanted[j];
    if (kind === "position") {
      rooms.set(id, (entry.value as EventPositionRecord | null)?.room_id ?? null);
      return;
    }
    const value = entry.value as EventStateGroups | null;
    if (value) ctx.eventGroups.set(id, value);
    groups.set(id, value);
  });
  const out = new Map<string, EventPlacement | null>();
  for (const [id, roomId] of rooms) {
    out.set(id, roomId === null ? null : { roomId, groups: groups.get(id) ?? null });
  }
  return out;
}
