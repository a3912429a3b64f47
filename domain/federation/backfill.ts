/**
 * Backfilling history from other servers (server-server spec "Backfilling and retrieving missing
 * events"): when a client paging back reaches a backward extremity (an event we hold whose prev
 * events we lack: the oldest event of a room we joined, or the far edge of a hole in the middle,
 * where the incoming-PDU handler crossed a gap longer than get_missing_events' 10 events with
 * `/state_ids`), ask a server in the room for `/backfill` from the events we lack. The store
 * keeps those per room (`EventReader.backwardExtremities`, opened and closed in the commit of
 * the append that causes it), each with the position of the event citing it, so the walk in
 * room_event_reads.ts knows when it has reached one.
 *
 * Where backfilled events go, and why: every batch of backfilled history takes the positions
 * just below the room's first, the filling of a hole in the middle too. Pagination stays one
 * walk down the positions, so a client paging back meets every event exactly once: what a
 * backfill adds lies below all it has been given and below every token it holds, and /sync,
 * which reads forward positions only, never shows history as new. The cost is order: a hole's
 * events come after (further back than) the older events we held below the hole, instead of
 * between them as the DAG has it (Synapse orders /messages by depth instead). Placing them in
 * the hole would need positions between two integers that tokens, the forward walk's `+1`
 * boundaries and sync's bisection over forward positions all assume do not exist, or
 * pagination tokens that detour through a side run and skip it on the way down; both change
 * the log's contract, so they are left for when clients need it. The room's start, the common
 * case (history from before we joined), keeps the DAG's order exactly.
 *
 * A prev event that belongs to another room never counts as held: an event citing one is
 * dropped, not placed on that room's state, so an answer cannot stitch two rooms' histories
 * together (SyTest "Backfilled events whose prev_events are in a different room do not allow
 * cross-room back-pagination").
 *
 * Every event of the answer gets the checks of an incoming PDU, with the incoming-PDU handler's
 * own steps: format, signatures, content hash and auth against its own auth events
 * (`admitFetchedEvents`, which holds each as an outlier with its verdict), then auth against
 * the state before it, decided by the store (`checkState`) on the state we give it. That state
 * is worked out here, oldest event first: the state after its prev events when they are in the
 * answer or our log, and for prev events we lack the sender's `/state_ids` (the handler's
 * `stateAcrossGap`), resolved when several disagree. The events are then appended newest first
 * (`AppendRequest.backfill`): each takes the position just below the room's first, so each
 * batch keeps the DAG's order, and current state never moves. A missing event that no server
 * gave us is not asked for again for a minute by this process.
 *
 * Synapse asks for 100 events at a time: a short history comes back whole, down to the create
 * event, and needs no `/state_ids` at all.
 */
import { authStateFromEvents, checkEventAuth } from "../protocol/auth_rules.ts";
import { authEventKeys } from "../protocol/auth_event_selection.ts";
import {
  referencedIds,
  type RoomEvent,
  stateKey,
  type StateMap,
  toRoomEvent,
} from "../protocol/events.ts";
import { isJsonObject } from "../protocol/json.ts";
import type { EventStore, StagedState, StateResolver } from "../ports/event_store.ts";
import { type FederationTransport, FederationUnreachable } from "../ports/federation_transport.ts";
import { type RoomVersion, roomVersion } from "../protocol/room_versions.ts";
import { createEventIdOfRoom } from "./pdu_input/auth_events.ts";
import { admitFetchedEvents, type FetchedEventSinks } from "./pdu_input/fetched_events.ts";
import { type GapDeps, stateAcrossGap } from "./pdu_input/missing_prev_events.ts";
import { remoteEventSource } from "./pdu_input/remote_events.ts";
import type { SignatureVerifier } from "./pdu_input/signatures.ts";
import type { HeldEvent } from "./pdu_input/types.ts";

/** Fetches history we lack behind a backward extremity; see room_event_reads.ts. */
export interface HistoryBackfill {
  /**
   * Fetch earlier events of `roomId` from the missing events `from` (backward extremities), or
   * without them from the prev events of the room's first event; resolves to how many were
   * stored accepted.
   */
  backfill(roomId: string, from?: readonly string[]): Promise<number>;
}

/** What backfill is built from. */
export interface RemoteBackfillDeps {
  store: EventStore;
  transport: FederationTransport;
  serverName: string;
  /** Step 2 of the PDU checks (part 2's signature rules over the key ring). */
  verifySignatures: SignatureVerifier;
  /** State resolution, for an event whose prev events' states disagree. */
  resolver: StateResolver;
}

/** Events asked for in one `/backfill` request, as Synapse asks. */
export const BACKFILL_LIMIT = 100;
/** Most servers tried for one backfill. */
const MAX_SERVERS_TRIED = 5;
/** Missing events asked from at once (`v` parameters), as Synapse limits them. */
const MAX_EXTREMITIES = 5;
/**
 * States at missing prev events one `/backfill` answer may have us fetch (`/state_ids`, then
 * its events, some 50 requests at most each): an honest batch lacks only the few events at its
 * far edge, and an answer of 100 events citing 20 invented prev events each must not cost
 * 2,000 of them. Events past the budget are left out, as when no state could be had.
 */
export const MAX_GAP_STATES_PER_BACKFILL = 10;
/** How long a missing event that no server could give us is not asked for again. */
const FRUITLESS_BACKOFF_MS = 60_000;
/** Fruitless attempts remembered at most (the oldest are forgotten first). */
const MAX_REMEMBERED_ATTEMPTS = 10_000;

/** Backfill over federation, through the incoming-PDU checks. */
export class RemoteBackfill implements HistoryBackfill {
  // One backfill of a room at a time in this process: concurrent readers wait for the same one
  // instead of fetching the same history twice (the store would dedupe, the network would not).
  readonly #running = new Map<string, Promise<number>>();
  // Missing events no server gave us, with when we last asked: a hole that cannot be filled (its
  // edge cites another room's event, or no server answers) would otherwise cost requests to
  // every server on each /messages page that reaches it. A per-process back-off, not a copy of
  // stored data: another isolate filling the hole removes the extremity from the store itself.
  readonly #fruitless = new Map<string, number>();

  constructor(private readonly deps: RemoteBackfillDeps) {}

  /** See HistoryBackfill.backfill. */
  backfill(roomId: string, from?: readonly string[]): Promise<number> {
    const running = this.#running.get(roomId);
    if (running) return running;
    const run = this.#backfill(roomId, from).finally(() => this.#running.delete(roomId));
    this.#running.set(roomId, run);
    return run;
  }

  async #backfill(roomId: string, from: readonly string[] | undefined): Promise<number> {
    const { store } = this.deps;
    const head = await store.roomHead(roomId);
    const version = head ? roomVersion(head.roomVersion) : undefined;
    if (!version) return 0;
    let prevs: readonly string[];
    let sender: string | undefined;
    if (from === undefined) {
      const first = await store.timeline(roomId, { dir: "f", limit: 1 });
      const oldest = first.events[0];
      if (oldest === undefined) return 0;
      prevs = referencedIds(oldest.pdu.prev_events);
      sender = oldest.pdu.sender;
    } else prevs = from;
    // None for the create event: the history is complete.
    const now = Date.now();
    const missing = (await this.#notInLog(roomId, prevs))
      .filter((id) =>
        (this.#fruitless.get(attemptKey(roomId, id)) ?? -Infinity) <= now - FRUITLESS_BACKOFF_MS
      )
      .slice(0, MAX_EXTREMITIES);
    if (missing.length === 0) return 0;

    let stored = 0;
    for (const server of await this.#servers(roomId, sender)) {
      const pdus = await this.#fetch(server, roomId, missing);
      if (pdus === undefined) continue;
      stored = await this.#store(server, roomId, version, pdus);
      break;
    }
    for (const id of await this.#notInLog(roomId, missing)) this.#noteFruitless(roomId, id, now);
    return stored;
  }

  #noteFruitless(roomId: string, eventId: string, at: number): void {
    const key = attemptKey(roomId, eventId);
    this.#fruitless.delete(key);
    this.#fruitless.set(key, at);
    if (this.#fruitless.size > MAX_REMEMBERED_ATTEMPTS) {
      this.#fruitless.delete(this.#fruitless.keys().next().value!);
    }
  }

  /** Servers in the room, the oldest event's sender's first (it surely has that history). */
  async #servers(roomId: string, sender: string | undefined): Promise<string[]> {
    const servers = new Set<string>(sender === undefined ? [] : [serverOf(sender)]);
    for (const server of (await this.deps.store.serversInRoom(roomId)).keys()) servers.add(server);
    servers.delete(this.deps.serverName);
    return [...servers].slice(0, MAX_SERVERS_TRIED);
  }

  async #fetch(server: string, roomId: string, from: string[]): Promise<unknown[] | undefined> {
    const query = [...from.map((id) => `v=${encodeURIComponent(id)}`), `limit=${BACKFILL_LIMIT}`];
    try {
      const response = await this.deps.transport.request({
        method: "GET",
        destination: server,
        path: `/_matrix/federation/v1/backfill/${encodeURIComponent(roomId)}?${query.join("&")}`,
      });
      const body = response.body;
      if (response.status !== 200 || !isJsonObject(body) || !Array.isArray(body.pdus)) {
        return undefined;
      }
      return body.pdus.slice(0, BACKFILL_LIMIT);
    } catch (error) {
      if (error instanceof FederationUnreachable) return undefined;
      throw error;
    }
  }

  /** Check the events, work out the state before each, append them newest first. */
  async #store(
    server: string,
    roomId: string,
    version: RoomVersion,
    pdus: unknown[],
  ): Promise<number> {
    const { store } = this.deps;
    const sinks = this.#sinks(roomId);
    // Steps 1 to 4 for each event (and any auth event it lacks); each is held as an outlier.
    const admitted = await admitFetchedEvents(roomId, version, pdus, sinks);
    const logged = new Set(
      [...(await store.findEvents([...admitted.keys()])).values()]
        .filter((e) => !e.outlier).map((e) => e.eventId),
    );
    const chunk = [...admitted.values()].filter((e) => !logged.has(e.eventId));
    const ordered = oldestFirst(chunk);

    const gap: GapDeps = {
      sinks,
      source: remoteEventSource(this.deps.transport, server),
      stateAfter: (id) => store.stateAtEvent(id, "after"),
      resolve: (v, maps) => this.#resolve(v, maps, admitted),
    };
    const before = new Map<string, StateMap>();
    const after = new Map<string, StateMap>();
    let gapStatesLeft = MAX_GAP_STATES_PER_BACKFILL;
    for (const held of ordered) {
      const event = toRoomEvent(held.pdu, held.eventId, version);
      const maps: StateMap[] = [];
      const outside: string[] = [];
      for (const id of event.prev_events) {
        const known = after.get(id);
        if (known) maps.push(known);
        else outside.push(id);
      }
      if (outside.length > 0) {
        const notLogged = await this.#notInLog(roomId, outside);
        const inLog = outside.filter((id) => !notLogged.includes(id));
        // A prev event of another room: no state of this room follows it, and taking that
        // room's would join the two histories. The event is left out.
        const elsewhere = await this.#ofOtherRooms(roomId, notLogged);
        if (elsewhere.length > 0) {
          console.warn("backfill: prev events of another room", roomId, event.event_id, elsewhere);
          continue;
        }
        if (notLogged.length > gapStatesLeft) {
          console.warn("backfill: too many missing prev events in one answer", roomId);
          continue;
        }
        gapStatesLeft -= notLogged.length;
        const across = await stateAcrossGap(
          roomId,
          version,
          { held: inLog, missing: notLogged },
          gap,
        );
        if (!across.ok) {
          console.warn(
            "backfill: no state before",
            roomId,
            event.event_id,
            across.reason,
          );
          continue;
        }
        maps.push(across.state);
      }
      const state = maps.length <= 1 ? (maps[0] ?? new Map()) : await gap.resolve(version, maps);
      before.set(event.event_id, state);
      const applies = held.status === "accepted" && event.state_key !== undefined &&
        await this.#allowedBy(event, state, version, admitted);
      after.set(
        event.event_id,
        applies
          ? new Map(state).set(stateKey(event.type, event.state_key!), event.event_id)
          : state,
      );
    }

    // Newest first: each append takes the position just below the room's first.
    const staged = new Map<StateMap, StagedState>();
    let stored = 0;
    for (const held of ordered.reverse()) {
      const state = before.get(held.eventId);
      if (state === undefined) continue;
      let stateBefore = staged.get(state);
      if (stateBefore === undefined) {
        stateBefore = await store.stageState(roomId, version.id, state);
        staged.set(state, stateBefore);
      }
      const result = await store.append({
        roomId,
        backfill: true,
        events: [{
          eventId: held.eventId,
          pdu: held.pdu,
          status: held.status,
          checkState: true,
          stateBefore,
        }],
      });
      const [appended] = result.events;
      if (appended.status === "accepted" && !appended.duplicate) stored++;
    }
    return stored;
  }

  /** The auth rules against `state` (what the store will check too), for the state after. */
  async #allowedBy(
    event: RoomEvent,
    state: StateMap,
    version: RoomVersion,
    admitted: Map<string, HeldEvent>,
  ): Promise<boolean> {
    const ids = authEventKeys(event, version).flatMap((key) => state.get(key) ?? []);
    const createId = createEventIdOfRoom(event.room_id, version) ??
      state.get(stateKey("m.room.create", ""));
    const events = await this.#events([...ids, ...(createId ? [createId] : [])], admitted, version);
    const createEvent = createId ? events.get(createId) : undefined;
    const authState = authStateFromEvents(ids.flatMap((id) => events.get(id) ?? []));
    return checkEventAuth(event, authState, version, { createEvent }).allowed;
  }

  async #events(
    ids: string[],
    admitted: Map<string, HeldEvent>,
    version: RoomVersion,
  ): Promise<Map<string, RoomEvent>> {
    const out = new Map<string, RoomEvent>();
    const rest: string[] = [];
    for (const id of ids) {
      const held = admitted.get(id);
      if (held) out.set(id, toRoomEvent(held.pdu, id, version));
      else rest.push(id);
    }
    for (const [id, e] of await this.deps.store.findEvents(rest)) {
      out.set(id, toRoomEvent(e.pdu, id, version));
    }
    return out;
  }

  async #resolve(
    version: RoomVersion,
    stateMaps: StateMap[],
    admitted: Map<string, HeldEvent>,
  ): Promise<StateMap> {
    const rejected = new Set<string>();
    return await this.deps.resolver({
      version,
      stateMaps,
      getEvent: async (id) => {
        const held = admitted.get(id) ??
          (await this.deps.store.findEvents([id])).get(id);
        if (!held) return undefined;
        if (held.status === "rejected") rejected.add(id);
        return toRoomEvent(held.pdu, id, version);
      },
      isRejected: (id) => rejected.has(id),
    });
  }

  /**
   * The IDs among `ids` that are not events of `roomId`'s log (outliers and events of other
   * rooms do not count).
   */
  async #notInLog(roomId: string, ids: readonly string[]): Promise<string[]> {
    const found = await this.deps.store.findEvents(ids);
    return ids.filter((id) => {
      const event = found.get(id);
      return !event || event.outlier || event.roomId !== roomId;
    });
  }

  /** The IDs among `ids` that we hold as events of another room than `roomId`. */
  async #ofOtherRooms(roomId: string, ids: readonly string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const found = await this.deps.store.findEvents(ids);
    return ids.filter((id) => {
      const event = found.get(id);
      return event !== undefined && event.roomId !== roomId;
    });
  }

  #sinks(roomId: string): FetchedEventSinks {
    const { store } = this.deps;
    return {
      verify: this.deps.verifySignatures,
      held: async (ids) => {
        const held = new Map<string, HeldEvent>();
        for (const [id, e] of await store.findEvents(ids)) {
          held.set(id, { eventId: id, pdu: e.pdu, status: e.status });
        }
        return held;
      },
      storeOutliers: (events) =>
        store.storeOutliers(
          roomId,
          events.map((e) => ({ eventId: e.eventId, pdu: e.pdu, status: e.status })),
        ),
    };
  }
}

/** Events in DAG order, oldest first: prev events (within the list) before, then by depth. */
function oldestFirst(events: HeldEvent[]): HeldEvent[] {
  const byId = new Map(events.map((e) => [e.eventId, e]));
  const waiting = new Map<string, number>();
  const children = new Map<string, string[]>();
  for (const e of events) {
    const prevs = referencedIds(e.pdu.prev_events).filter((id) => byId.has(id) && id !== e.eventId);
    waiting.set(e.eventId, prevs.length);
    for (const p of prevs) children.set(p, [...(children.get(p) ?? []), e.eventId]);
  }
  const depth = (id: string) => byId.get(id)!.pdu.depth;
  const ready = events.filter((e) => waiting.get(e.eventId) === 0).map((e) => e.eventId);
  const out: HeldEvent[] = [];
  while (ready.length > 0) {
    ready.sort((a, b) => depth(b) - depth(a));
    const id = ready.pop()!;
    out.push(byId.get(id)!);
    for (const child of children.get(id) ?? []) {
      const left = waiting.get(child)! - 1;
      waiting.set(child, left);
      if (left === 0) ready.push(child);
    }
  }
  // Events in a prev_events cycle (impossible for honest events) are left out.
  return out;
}

function attemptKey(roomId: string, eventId: string): string {
  return `${roomId}\u0000${eventId}`;
}

function serverOf(userId: string): string {
  return userId.slice(userId.indexOf(":") + 1);
}
