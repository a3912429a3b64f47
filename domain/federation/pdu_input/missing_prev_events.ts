/**
 * An event whose prev events we do not hold sits after a gap in our copy of the DAG. First the
 * sender is asked for the events in between (`/get_missing_events`: from our forward
 * extremities to the event, a few at most), which are handled oldest first like any PDU. When
 * that does not close the gap, the state before the event is taken from the sender instead:
 * the state at each missing prev event (`/state_ids`, plus the prev event itself when it is
 * state), its events fetched (`/state` when many are lacking, else `/event` each), checked and
 * stored as outliers, resolved with the state after
 * the prev events we do hold when there are several, and staged for the append.
 */
import {
  type Pdu,
  type StateKey,
  stateKey,
  type StateMap,
  toRoomEvent,
} from "../../protocol/events.ts";
import { isJsonObject } from "../../protocol/json.ts";
import type { RoomVersion } from "../../protocol/room_versions.ts";
import { admitFetchedEvents, type FetchedEventSinks } from "./fetched_events.ts";
import type { RemoteEventSource } from "./remote_events.ts";

/** How many events one `/get_missing_events` asks for (Synapse's figure). */
export const MISSING_EVENTS_LIMIT = 10;
/** Past this many events lacking, the state is asked for whole (`/state`), not one by one. */
export const STATE_REQUEST_THRESHOLD = 50;
/** Events fetched from the sender at once while filling in a state. */
const FETCH_CONCURRENCY = 16;

/**
 * The missing events the sender returned for `latest`, in the order to handle them: oldest
 * (lowest depth) first. At most the limit asked for: each is handled as a PDU, and may cost
 * `/state_ids` and its events, so an answer longer than asked (a hostile or broken peer) is cut
 * to the events nearest `latest`, the ones it rests on.
 */
export async function fetchMissingEvents(
  source: RemoteEventSource,
  roomId: string,
  forwardExtremities: string[],
  latest: string,
): Promise<unknown[]> {
  const events = await source.missingEvents(roomId, {
    earliest: forwardExtremities,
    latest: [latest],
    limit: MISSING_EVENTS_LIMIT,
    minDepth: 0,
  });
  const depthOf = (pdu: unknown) =>
    isJsonObject(pdu) && typeof pdu.depth === "number" ? pdu.depth : Number.MAX_SAFE_INTEGER;
  return events.filter(isJsonObject).sort((a, b) => depthOf(a) - depthOf(b))
    .slice(-MISSING_EVENTS_LIMIT);
}

/** What filling in the state across a gap reads and writes. */
export interface GapDeps {
  sinks: FetchedEventSinks;
  source: RemoteEventSource;
  /** The state after an event of the room's log (null when it is not in the log). */
  stateAfter(eventId: string): Promise<StateMap | null>;
  /** State resolution over several states (events are held by then: log or outliers). */
  resolve(version: RoomVersion, stateMaps: StateMap[]): Promise<StateMap>;
}

/** The state before an event from prev events we hold and ones we lack; or why not. */
export async function stateAcrossGap(
  roomId: string,
  version: RoomVersion,
  prevEvents: { held: string[]; missing: string[] },
  deps: GapDeps,
): Promise<{ ok: true; state: StateMap } | { ok: false; reason: string }> {
  const maps: StateMap[] = [];
  for (const id of prevEvents.held) {
    const after = await deps.stateAfter(id);
    if (after) maps.push(after);
  }
  for (const id of prevEvents.missing) {
    const after = await remoteStateAfter(roomId, version, id, deps);
    if (!after.ok) return after;
    maps.push(after.state);
  }
  if (maps.length === 1) return { ok: true, state: maps[0] };
  return { ok: true, state: await deps.resolve(version, maps) };
}

/** The state after `eventId` as its sender holds it, every event checked and stored. */
async function remoteStateAfter(
  roomId: string,
  version: RoomVersion,
  eventId: string,
  deps: GapDeps,
): Promise<{ ok: true; state: StateMap } | { ok: false; reason: string }> {
  const ids = await deps.source.stateIds(roomId, eventId);
  if (!ids) return { ok: false, reason: `the state at ${eventId} could not be fetched` };
  const wanted = [...new Set([...ids.pduIds, ...ids.authChainIds, eventId])];
  const held = await deps.sinks.held(wanted);
  let lacking = wanted.filter((id) => !held.has(id));
  const fetched: unknown[] = [];
  if (lacking.length > STATE_REQUEST_THRESHOLD) {
    // Many events: the whole state in one answer costs less than one request each.
    const wholeState = await deps.source.state(roomId, eventId);
    const answered = new Set<string>();
    for (const [id, e] of await admitFetchedEvents(roomId, version, wholeState, deps.sinks)) {
      held.set(id, e);
      answered.add(id);
    }
    lacking = lacking.filter((id) => !answered.has(id));
    // What `/state` left out is fetched one by one only when it is a few: the IDs are the
    // sender's word, and a list of invented ones must not cost a request each.
    if (lacking.length > STATE_REQUEST_THRESHOLD) {
      return {
        ok: false,
        reason: `the state at ${eventId} lacks ${lacking.length} events its /state_ids named`,
      };
    }
  }
  for (let i = 0; i < lacking.length; i += FETCH_CONCURRENCY) {
    const batch = await Promise.all(
      lacking.slice(i, i + FETCH_CONCURRENCY).map((id) => deps.source.event(id)),
    );
    fetched.push(...batch.filter((pdu) => pdu !== undefined));
  }
  for (const [id, e] of await admitFetchedEvents(roomId, version, fetched, deps.sinks)) {
    held.set(id, e);
  }
  const state: StateMap = new Map();
  for (const id of ids.pduIds) {
    const event = held.get(id);
    if (!event) return { ok: false, reason: `state event ${id} could not be fetched or checked` };
    if (roomOf(event.pdu, id, version) !== roomId) {
      return { ok: false, reason: `${id} is of another room` };
    }
    const key = keyOf(event.pdu);
    if (key === undefined) return { ok: false, reason: `${id} in the state is not a state event` };
    // A state entry our own checks rejected is not taken on the sender's word.
    if (event.status !== "rejected") state.set(key, id);
  }
  const prev = held.get(eventId);
  if (!prev) return { ok: false, reason: `prev event ${eventId} could not be fetched or checked` };
  if (roomOf(prev.pdu, eventId, version) !== roomId) {
    return { ok: false, reason: `${eventId} is of another room` };
  }
  const prevKey = keyOf(prev.pdu);
  if (prevKey !== undefined && prev.status !== "rejected") state.set(prevKey, eventId);
  return { ok: true, state };
}

/** The room of an event (a v12 create event names none: its room is named after it). */
function roomOf(pdu: Pdu, eventId: string, version: RoomVersion): string {
  return toRoomEvent(pdu, eventId, version).room_id;
}

function keyOf(pdu: Pdu): StateKey | undefined {
  return typeof pdu.state_key === "string" ? stateKey(pdu.type, pdu.state_key) : undefined;
}
