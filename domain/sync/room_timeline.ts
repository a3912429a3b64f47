/**
 * A room's `timeline` in /sync: the newest events of the sync window that come out of the read
 * pipeline, up to the filter's limit. The limit counts events after the pipeline (history
 * visibility, ignored users, the timeline filter), so a filter that drops most of the room
 * still fills its limit: the window is walked backwards page by page until the limit is met,
 * the window ends, or the page budget runs out (Synapse's `_load_filtered_recents` does the
 * same, five pages at most). Every page goes through the pipeline; nothing is shown otherwise.
 */
import { matchesRoomEventFilter } from "../protocol/event_filter.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { EventReader, RoomChanges, StoredEvent } from "../ports/event_store.ts";
import type { ReadPipeline, RoomRead } from "../room_events/read_pipeline.ts";
import { isAfter } from "./sync_token.ts";

/** Pages walked after the first when the pipeline dropped too much (Synapse walks 5). */
const MAX_EXTRA_PAGES = 5;

/** One room's timeline window. */
export interface TimelineWindow {
  roomId: string;
  /** Only events after this sync token; absent: the room's whole history. */
  since?: string;
  /** The newest page of the window (what `roomChanges` returned); absent: no events in it. */
  first?: RoomChanges;
  /** Events above this position are not the reader's (a left room ends at the leave). */
  maxPosition?: number;
  /** Events wanted after the pipeline; 0 asks for none. */
  limit: number;
  read: RoomRead;
  /**
   * The state section for a timeline, when the caller wants it read in the same pipeline pass
   * as the first page (one redaction and transaction-ID lookup per room instead of two). Used
   * only when that page turns out to be the whole timeline and the pipeline kept exactly the
   * events the section was computed for; otherwise `state` is absent from the batch.
   */
  state?: (timeline: TimelineShape) => Promise<StoredEvent[]>;
}

/** What the state section needs to know of a timeline. */
export interface TimelineShape {
  kept: StoredEvent[];
  walked: StoredEvent[];
  complete: boolean;
  limited: boolean;
}

/** The timeline as returned, and what the state section needs to know of the walk. */
export interface TimelineBatch {
  /** Formatted events, oldest first. */
  events: JsonObject[];
  /** The stored events behind `events`, in the same order. */
  kept: StoredEvent[];
  /** More events of the window precede the returned ones. */
  limited: boolean;
  /** Token before the first returned event (or before the walked part when none is). */
  prevBatch?: string;
  /** Every event of the window walked, shown or not, oldest first. */
  walked: StoredEvent[];
  /** The walk reached the window's lower end (`since`, or the room's first event). */
  complete: boolean;
  /** The state section read with the first page (see `TimelineWindow.state`). */
  state?: { stored: StoredEvent[]; events: JsonObject[] };
}

/** Walk the window backwards through the pipeline until `limit` events come out. */
export async function loadTimeline(
  store: Pick<EventReader, "timeline" | "timelineTokenAt">,
  pipeline: ReadPipeline,
  window: TimelineWindow,
): Promise<TimelineBatch> {
  const { first, since, maxPosition, limit } = window;
  const inWindow = (e: StoredEvent) =>
    (since === undefined || isAfter(e.versionstamp, since)) &&
    (maxPosition === undefined || e.position <= maxPosition);
  let walked = (first?.events ?? []).filter(inWindow);
  let more = first?.limited ?? false;
  let from = first?.prevBatch;
  const kept: StoredEvent[] = [];
  const events: JsonObject[] = [];
  const run = async (page: StoredEvent[]) => {
    if (limit === 0 || page.length === 0) return;
    const out = await pipeline.readRoom(window.read, { timeline: page });
    kept.unshift(...out.timelineKept);
    events.unshift(...out.timeline);
  };
  let state: TimelineBatch["state"];
  if (window.state && limit > 0 && walked.length > 0) {
    // First page with the state section in the same pass, computed for the events the
    // pipeline is expected to keep (its filter and ignore rules on the unredacted events);
    // checked against what it kept below.
    const { read } = window;
    const page = walked;
    const expectKept = (e: StoredEvent) =>
      (e.pdu.state_key !== undefined || !read.ignored?.has(e.pdu.sender)) &&
      matchesRoomEventFilter(read.filter ?? {}, { ...e.pdu, room_id: window.roomId });
    let expected: StoredEvent[] | undefined;
    let stored: StoredEvent[] = [];
    const out = await pipeline.readRoom(read, {
      timeline: page,
      state: async (visible) => {
        const assumed = visible.filter(expectKept);
        // More pages will follow: the section waits for the whole timeline.
        if (assumed.length < limit && more) return [];
        expected = assumed;
        stored = await window.state!({
          kept: assumed,
          walked: page,
          complete: !more,
          limited: more,
        });
        return stored;
      },
    });
    kept.push(...out.timelineKept);
    events.push(...out.timeline);
    const same = expected !== undefined && expected.length === kept.length &&
      expected.every((e, i) => e.eventId === kept[i].eventId);
    if (same) state = { stored, events: out.state };
  } else {
    await run(walked);
  }
  // A page several times the shortfall: a filter that drops most events needs few round trips.
  const pageSize = Math.max(limit * 2, 10);
  for (let page = 0; more && kept.length < limit && page < MAX_EXTRA_PAGES; page++) {
    if (from === undefined) break;
    const next = await store.timeline(window.roomId, { from, dir: "b", limit: pageSize });
    const older = next.events.filter(inWindow).reverse();
    // The page left the window (or the log ended): nothing older belongs to this sync.
    more = next.end !== undefined &&
      next.events.every((e) => since === undefined || isAfter(e.versionstamp, since));
    from = next.end;
    walked = [...older, ...walked];
    await run(older);
  }
  // With a limit of 0 any event of the window is one the client did not get.
  let limited = more || (limit === 0 && walked.length > 0);
  if (kept.length > limit) {
    kept.splice(0, kept.length - limit);
    events.splice(0, events.length - limit);
    limited = true;
  }
  let prevBatch: string | undefined;
  if (kept.length > 0) prevBatch = store.timelineTokenAt(kept[0].position);
  else if (walked.length > 0) prevBatch = store.timelineTokenAt(walked[0].position);
  else prevBatch = first?.prevBatch;
  return { events, kept, limited, prevBatch, walked, complete: !more, state };
}
