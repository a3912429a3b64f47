/**
 * The `state` section of a room in /sync: what the client must lay over the state it knew at
 * `since` to know the state at the start of the returned timeline, as Synapse 1.67 computes it
 * (`compute_state_delta`, `_calculate_state`):
 *
 * - a full section (initial sync, `full_state`, a room joined in the window) is the whole state
 *   at the timeline's start;
 * - an incremental one holds the entries set by events of the window the client was not shown:
 *   those before the timeline's start (the gap of a limited timeline) and those the pipeline
 *   left out of the timeline (a filtered type, a hidden event), with their latest value;
 * - entries the timeline sets itself are learnt from the timeline and left out.
 *
 * With `lazy_load_members`, member events are those of the timeline's senders (and the
 * syncing user on a full sync), plus, on an incremental sync, members whose membership changed
 * in the window unseen (lazy loading is off for the gap, as in Synapse, so a client learns of
 * someone who joined or left while it was away). Member events already sent to the device are
 * not sent again unless `include_redundant_members` (lazy_members.ts remembers them).
 */
import { matchesRoomEventFilter, type RoomEventFilter } from "../protocol/event_filter.ts";
import { type StateKey, stateKey, type StateMap } from "../protocol/events.ts";
import type { EventReader, StoredEvent } from "../ports/event_store.ts";
import { isAfter } from "./sync_token.ts";

/** Gap events walked to find the state keys they set; beyond this, send the full state. */
const MAX_GAP_EVENTS = 500;

const MEMBER = "m.room.member";

/** How much state a room's entry needs. */
export interface StateSectionRequest {
  roomId: string;
  userId: string;
  /** The timeline as returned, oldest first. */
  timeline: readonly StoredEvent[];
  /** Every event of the window walked for the timeline, oldest first. */
  walked: readonly StoredEvent[];
  /** The walk reached `since` (or the room's start): no unwalked gap remains. */
  complete: boolean;
  /** Full state, or only changes since `since`. */
  full: boolean;
  since?: string;
  /** The timeline does not reach back to `since`. */
  limited: boolean;
  /** Where the window ends: after this event (a left room's leave); absent: current state. */
  endEvent?: StoredEvent;
  filter: RoomEventFilter;
}

/** The section's events, unrendered, sorted by type and state key. */
export async function stateSection(
  store: Pick<
    EventReader,
    "stateAtEvent" | "currentState" | "timeline" | "timelineTokenAt" | "getEvents"
  >,
  req: StateSectionRequest,
): Promise<StoredEvent[]> {
  const lazy = req.filter.lazy_load_members === true;
  const full = req.full || req.since === undefined;
  const first = req.timeline[0];
  const shown = new Set(req.timeline.map((e) => e.eventId));
  // Events of the window the client was not shown: before the timeline, or left out of it.
  const before = req.walked.filter((e) => first === undefined || e.position < first.position);
  const hidden = req.walked.filter((e) =>
    first !== undefined && e.position >= first.position && !shown.has(e.eventId)
  );
  const hiddenKeys = keysOf(hidden);
  let gapKeys: Set<StateKey> | "all" | undefined;
  if (!full) {
    gapKeys = keysOf(before);
    if (!req.complete && req.since !== undefined) {
      const oldest = req.walked[0] ?? first;
      const more = oldest === undefined
        ? "all"
        : await gapStateKeys(store, req.roomId, oldest, req.since, gapKeys.size);
      if (more === "all") gapKeys = "all";
      else for (const key of more) gapKeys.add(key);
    }
  }
  // The common incremental case (every event of the window shown, no lazy members) needs no
  // state at all: skip the reads.
  if (!full && !lazy && hiddenKeys.size === 0 && gapKeys !== "all" && gapKeys!.size === 0) {
    return [];
  }
  const contains = keysOf(req.timeline);
  // The state at the window's end only matters for changes hidden from the timeline that it
  // does not supersede (or when there is no timeline to start from): one state read saved in
  // the common case.
  const newest = req.endEvent ?? req.walked.at(-1);
  const needEnd = first === undefined || [...hiddenKeys].some((key) => !contains.has(key));
  const readEnd = async (): Promise<StateMap> =>
    newest
      ? (await store.stateAtEvent(newest.eventId, "after")) ?? new Map()
      : await store.currentState(req.roomId);
  const [end, startRead] = await Promise.all([
    needEnd ? readEnd() : new Map() as StateMap,
    first ? store.stateAtEvent(first.eventId, "before") : undefined,
  ]);
  const start: StateMap = first ? startRead ?? new Map() : end;

  const candidates = new Set<StateKey>(hiddenKeys);
  if (full || gapKeys === "all") { for (const key of start.keys()) candidates.add(key); }
  else for (const key of gapKeys!) candidates.add(key);
  const result: StateMap = new Map();
  for (const key of candidates) {
    // A hidden change the timeline does not supersede: its latest value.
    const id = hiddenKeys.has(key) && !contains.has(key) ? end.get(key) : start.get(key);
    if (id === undefined) continue;
    if (lazy && key.startsWith(`${MEMBER}\u0000`) && (full || !changedUnseen(key))) continue;
    result.set(key, id);
  }
  if (lazy) {
    // Senders of the timeline, unless an earlier timeline event told their membership.
    const told = new Set<string>();
    const members = new Set<string>();
    for (const event of req.timeline) {
      if (!told.has(event.pdu.sender)) members.add(event.pdu.sender);
      if (event.pdu.type === MEMBER && typeof event.pdu.state_key === "string") {
        told.add(event.pdu.state_key);
      }
    }
    if (full) members.add(req.userId);
    for (const user of members) {
      const key = stateKey(MEMBER, user);
      const id = start.get(key);
      if (id !== undefined) result.set(key, id);
    }
  }
  const ids = [...result.values()].filter((id) => !shown.has(id));
  const events = await store.getEvents(ids);
  return [...events.values()]
    .filter((e) => matchesRoomEventFilter(req.filter, e.pdu))
    .sort((a, b) => compareKeys(a, b));

  function changedUnseen(key: StateKey): boolean {
    return hiddenKeys.has(key) || gapKeys === "all" || gapKeys!.has(key);
  }
}

/** State keys the events set. */
function keysOf(events: readonly StoredEvent[]): Set<StateKey> {
  const keys = new Set<StateKey>();
  for (const e of events) {
    if (typeof e.pdu.state_key === "string") keys.add(stateKey(e.pdu.type, e.pdu.state_key));
  }
  return keys;
}

/**
 * State keys set by events after `since` and before `oldest` (the walk's end); "all" when the
 * gap is too long to walk.
 */
async function gapStateKeys(
  store: Pick<EventReader, "timeline" | "timelineTokenAt">,
  roomId: string,
  oldest: StoredEvent,
  since: string,
  walkedAlready: number,
): Promise<Set<StateKey> | "all"> {
  const keys = new Set<StateKey>();
  let from: string | undefined = store.timelineTokenAt(oldest.position);
  let walked = walkedAlready;
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

function compareKeys(a: StoredEvent, b: StoredEvent): number {
  const ka = `${a.pdu.type}\u0000${a.pdu.state_key}`;
  const kb = `${b.pdu.type}\u0000${b.pdu.state_key}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}
