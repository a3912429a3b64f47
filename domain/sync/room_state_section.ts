/**
 * The `state` section of a room in /sync: the state at the start of the returned timeline.
 * A full section (initial sync, `full_state`, a room just joined) is that whole state. An
 * incremental one holds only the entries set by events in the gap between `since` and the
 * timeline's start (events the client never saw): empty when the timeline is not limited.
 * With `lazy_load_members`, member events are only those of timeline senders and the syncing
 * user; they are sent again every time (redundant, which every client accepts).
 */
import { matchesRoomEventFilter, type RoomEventFilter } from "../event_filter.ts";
import { type StateKey, stateKey, type StateMap } from "../events.ts";
import type { EventStore, StoredEvent } from "../ports/event_store.ts";
import { isAfter } from "./sync_token.ts";

/** Gap events walked to find the state keys they set; beyond this, send the full state. */
const MAX_GAP_EVENTS = 500;

/** How much state a room's entry needs. */
export interface StateSectionRequest {
  roomId: string;
  userId: string;
  /** The timeline as returned (unfiltered), oldest first. */
  timeline: readonly StoredEvent[];
  /** Token before the first timeline event, to walk the gap backwards. */
  prevBatch: string;
  /** Full state, or only changes since `since`. */
  full: boolean;
  since?: string;
  /** The window held more events than returned. */
  limited: boolean;
  filter: RoomEventFilter;
}

/** The state section's events, unrendered, sorted by type and state key. */
export async function stateSection(
  store: EventStore,
  req: StateSectionRequest,
): Promise<StoredEvent[]> {
  const lazy = req.filter.lazy_load_members === true;
  const full = req.full || req.since === undefined;
  // The common incremental case (no gap, no lazy members) needs no state at all: skip the read.
  if (!full && !req.limited && !lazy) return [];
  const [before, keys] = await Promise.all([
    req.timeline.length > 0
      ? store.stateAtEvent(req.timeline[0].eventId, "before").then((s) => s ?? new Map())
      : store.currentState(req.roomId),
    full || !req.limited || req.since === undefined
      ? undefined
      : gapStateKeys(store, req.roomId, req.prevBatch, req.since),
  ]);

  let wanted: StateMap;
  if (full) wanted = before;
  else if (keys === undefined) wanted = new Map();
  else wanted = keys === "all" ? before : pick(before, keys);

  const result = new Map(wanted);
  if (lazy) {
    for (const key of result.keys()) {
      if (key.startsWith("m.room.member\u0000")) result.delete(key);
    }
    const members = new Set(req.timeline.map((e) => e.pdu.sender));
    if (full) members.add(req.userId);
    for (const user of members) {
      const key = stateKey("m.room.member", user);
      const id = before.get(key);
      if (id !== undefined) result.set(key, id);
    }
  }
  // A timeline event already sets the entry: the client learns it from the timeline.
  const inTimeline = new Set(req.timeline.map((e) => e.eventId));
  const ids = [...result.values()].filter((id) => !inTimeline.has(id));
  const events = await store.getEvents(ids);
  return [...events.values()]
    .filter((e) => matchesRoomEventFilter(req.filter, e.pdu))
    .sort((a, b) => compareKeys(a, b));
}

/** State keys set by events after `since` and before `prevBatch`; "all" when the gap is huge. */
async function gapStateKeys(
  store: EventStore,
  roomId: string,
  prevBatch: string,
  since: string,
): Promise<Set<StateKey> | "all"> {
  const keys = new Set<StateKey>();
  let from: string | undefined = prevBatch;
  let walked = 0;
  while (from !== undefined) {
    const page = await store.timeline(roomId, { from, dir: "b", limit: 100 });
    for (const event of page.events) {
      if (!isAfter(event.versionstamp, since)) return keys;
      if (++walked > MAX_GAP_EVENTS) return "all";
      if (typeof event.pdu.state_key === "string") {
        keys.add(stateKey(event.pdu.type, event.pdu.state_key));
      }
    }
    from = page.end;
  }
  return keys;
}

function pick(state: StateMap, keys: Set<StateKey>): StateMap {
  const out: StateMap = new Map();
  for (const key of keys) {
    const id = state.get(key);
    if (id !== undefined) out.set(key, id);
  }
  return out;
}

function compareKeys(a: StoredEvent, b: StoredEvent): number {
  const ka = `${a.pdu.type}\u0000${a.pdu.state_key}`;
  const kb = `${b.pdu.type}\u0000${b.pdu.state_key}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}
