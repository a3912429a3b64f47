/**
 * Outliers: events held outside every timeline (the state and auth chain of a join, auth events
 * fetched to check another event). They sit in their own map, never in `roomid_log`, so no
 * timeline, /messages or /sync read can meet them. Appending one later puts it in the log; the
 * outlier record stays (records are never rewritten) and every read prefers the log's copy.
 */
import { badJson } from "../domain/errors.ts";
import { type Pdu, roomIdFromCreateEventId } from "../domain/protocol/events.ts";
import type { FoundEvent, NewEvent } from "../domain/ports/event_store.ts";
import { decodeJson, encodeJson, readChunks, splitChunks } from "./chunked_value.ts";
import { type PlannedMutation, SplitCommitWriter } from "./commit_budget.ts";
import { readStoredEvents } from "./event_reads.ts";
import { getManyChunked } from "./get_many.ts";
import type { StoreContext } from "./store_context.ts";
import type { EventPositionRecord, OutlierRecord } from "./store_records.ts";

/**
 * Store `events` of `roomId` as outliers, skipping those held already (as outliers or in a log),
 * in as many commits as KV's limits need. Each commit is complete on its own: a crash between
 * two leaves whole outliers behind, and running the same call again stores the rest.
 */
export async function storeOutliers(
  ctx: StoreContext,
  roomId: string,
  events: readonly NewEvent[],
): Promise<void> {
  const unique = new Map<string, NewEvent>();
  for (const event of events) {
    // A v12 create event carries no room_id: its room is named after its own ID.
    const eventRoom = event.pdu.room_id === undefined && event.pdu.type === "m.room.create"
      ? roomIdFromCreateEventId(event.eventId)
      : event.pdu.room_id;
    if (eventRoom !== roomId) {
      throw badJson(`event ${event.eventId} belongs to ${eventRoom}, not ${roomId}`);
    }
    unique.set(event.eventId, event);
  }
  const ids = [...unique.keys()].filter((id) => !ctx.events.get(id) && !ctx.outliers.get(id));
  const [positions, outliers] = await Promise.all([
    getManyChunked<EventPositionRecord>(ctx.kv, ids.map((id) => ctx.keys.eventPosition(id))),
    getManyChunked<OutlierRecord>(ctx.kv, ids.map((id) => ctx.keys.outlier(id))),
  ]);
  const fresh = ids.filter((_, i) => !positions[i].value && !outliers[i].value);
  const writer = new SplitCommitWriter(ctx.kv);
  const failed = () => new Error("storing outliers failed a check it does not make");
  const stored: FoundEvent[] = [];
  for (const id of fresh) {
    const event = unique.get(id)!;
    stored.push({ eventId: id, roomId, pdu: event.pdu, status: event.status, outlier: true });
    if (!(await writer.add(outlierWrites(ctx, roomId, event)))) throw failed();
  }
  if (!(await writer.flush())) throw failed();
  // Committed and immutable: the staged state and join that usually follow read them here.
  for (const event of stored) ctx.outliers.set(event.eventId, event);
}

function outlierWrites(ctx: StoreContext, roomId: string, event: NewEvent): PlannedMutation[] {
  const [first, ...rest] = splitChunks(encodeJson(event.pdu));
  const record: OutlierRecord = {
    room_id: roomId,
    status: event.status,
    pdu: first,
    chunks: rest.length + 1,
  };
  return [
    { op: "set", key: ctx.keys.outlier(event.eventId), value: record },
    ...rest.map((chunk, i): PlannedMutation => ({
      op: "set",
      key: ctx.keys.outlierChunk(event.eventId, i + 1),
      value: chunk,
    })),
  ];
}

/** Outliers by ID (whether or not they were appended since); unknown IDs are absent. */
export async function readOutliers(
  ctx: StoreContext,
  eventIds: readonly string[],
): Promise<Map<string, FoundEvent>> {
  const found = new Map<string, FoundEvent>();
  const missing: string[] = [];
  for (const id of new Set(eventIds)) {
    const cached = ctx.outliers.get(id);
    if (cached) found.set(id, cached);
    else missing.push(id);
  }
  const entries = await getManyChunked<OutlierRecord>(
    ctx.kv,
    missing.map((id) => ctx.keys.outlier(id)),
  );
  await Promise.all(entries.map(async (entry, i) => {
    const record = entry.value;
    if (!record) return;
    const id = missing[i];
    const bytes = await readChunks(
      ctx.kv,
      record.pdu,
      record.chunks,
      ctx.keys.outlierChunkPrefix(id),
    );
    const event: FoundEvent = {
      eventId: id,
      roomId: record.room_id,
      pdu: decodeJson<Pdu>(bytes),
      status: record.status,
      outlier: true,
    };
    ctx.outliers.set(id, event);
    found.set(id, event);
  }));
  return found;
}

/** Events by ID from the logs, then the outliers for the rest; unknown IDs are absent. */
export async function findEvents(
  ctx: StoreContext,
  eventIds: readonly string[],
): Promise<Map<string, FoundEvent>> {
  const found = new Map<string, FoundEvent>();
  const logged = await readStoredEvents(ctx, eventIds);
  for (const [id, e] of logged) {
    found.set(id, { eventId: id, roomId: e.roomId, pdu: e.pdu, status: e.status, outlier: false });
  }
  const rest = eventIds.filter((id) => !logged.has(id));
  if (rest.length > 0) { for (const [id, e] of await readOutliers(ctx, rest)) found.set(id, e); }
  return found;
}
