/**
 * The room reads other servers make (Server-Server API): `/event`, `/state`, `/state_ids`,
 * `/event_auth`, `/backfill`, `/get_missing_events` and `/timestamp_to_event`.
 *
 * Every room-scoped read is refused (403 M_FORBIDDEN) when the room's server ACL denies the
 * origin or the origin may not read the room (none of its users joined, and the room is not
 * world-readable: server_visibility.ts). Events found are handed to the read pipeline's server
 * read (`ReadPipeline.readForServer`), which prunes what the origin may not see by history
 * visibility, what a redaction applies to and what erased users sent, and leaves out the
 * redaction events that do not apply (so /event answers 404 for one, and /backfill and
 * /get_missing_events skip it); nothing here formats an event. State and auth chains are given
 * whole (redactions applied, nothing left out): a server in the room needs them to authorise
 * events, as Synapse serves them.
 *
 * Event look-ups read the room logs first and ask `findEvents` only for the IDs not there, so
 * events held as outliers (auth chains, fetched auth events) are served too (`/event`,
 * `/event_auth`, the auth chains of `/state`); the walks (`/backfill`, `/get_missing_events`)
 * and `/state` at an event take timeline events only. Events of another room than the one named
 * are not found.
 */
import { forbidden, notFound, unsupportedRoomVersion } from "../errors.ts";
import { referencedIds, toRoomEvent } from "../protocol/events.ts";
import type { JsonObject } from "../protocol/json.ts";
import {
  type Direction,
  type EventReader,
  type FoundEvent,
  OUTLIER_POSITION,
  type RemoteEventStore,
  type StoredEvent,
} from "../ports/event_store.ts";
import type { RelationReader } from "../ports/relation_store.ts";
import type { ReadPipeline } from "../room_events/read_pipeline.ts";
import { type RoomVersion, roomVersion } from "../protocol/room_versions.ts";
import { authChainOf } from "../protocol/state_res/auth_chain.ts";
import { EventCache } from "../protocol/state_res/event_cache.ts";
import { MinHeap } from "../protocol/state_res/min_heap.ts";
import { RoomServerAcl } from "./server_acl.ts";

/** Events one /backfill answers at most (Synapse's cap: it asks for 100 itself). */
export const MAX_BACKFILL_LIMIT = 100;
/** Events one /get_missing_events answers at most (Synapse's cap). */
export const MAX_MISSING_EVENTS_LIMIT = 20;
/** /get_missing_events' default `limit` (spec). */
export const DEFAULT_MISSING_EVENTS_LIMIT = 10;
/** Timestamp index entries checked for one the origin may see. */
const MAX_TIMESTAMP_CANDIDATES = 200;

/** What the reads need. */
export interface ServerReadsDeps {
  store: EventReader & Pick<RemoteEventStore, "findEvents">;
  pipeline: ReadPipeline;
  relations: Pick<RelationReader, "eventsByTimestamp">;
  /** This server's name: the `origin` of the transactions answered. */
  serverName: string;
  now: () => number;
}

/** A `/get_missing_events` request body, validated by the route. */
export interface MissingEventsQuery {
  earliestEvents: readonly string[];
  latestEvents: readonly string[];
  limit?: number;
  minDepth?: number;
}

/** A room opened for an origin's read. */
interface OpenRoom {
  roomId: string;
  version: RoomVersion;
}

/** Room reads for other servers, every event through the read pipeline. */
export class ServerReads {
  readonly #acl: RoomServerAcl;

  /** Over the event store (log and outliers), the read pipeline and the timestamp index. */
  constructor(private readonly deps: ServerReadsDeps) {
    this.#acl = new RoomServerAcl(deps.store);
  }

  /**
   * Refuse (403) an origin the room's ACL denies or that may not read the room; the room's
   * version otherwise. An unknown room is one the origin is not in (403), as for Synapse.
   */
  async openRoom(origin: string, roomId: string): Promise<OpenRoom> {
    await this.#acl.assertAllowed(roomId, origin);
    const head = await this.deps.store.roomHead(roomId);
    if (!head || !(await this.deps.pipeline.serverMayReadRoom(roomId, origin))) {
      throw forbidden(`Server ${origin} is not in room ${roomId}`);
    }
    const version = roomVersion(head.roomVersion);
    if (!version) throw unsupportedRoomVersion(head.roomVersion);
    return { roomId, version };
  }

  /**
   * `GET /event/{eventId}`: the event as a one-PDU transaction; 404 when we hold none, or it is
   * a redaction the pipeline withholds (one that does not apply, as a client's /event does).
   */
  async event(origin: string, eventId: string): Promise<JsonObject> {
    const found = (await this.#find([eventId])).get(eventId);
    if (!found) throw notFound(`Event ${eventId} not found`);
    const room = await this.openRoom(origin, found.roomId);
    const pdus = await this.#out(origin, room, [found]);
    if (pdus.length === 0) throw notFound(`Event ${eventId} not found`);
    return this.#transaction(pdus);
  }

  /**
   * `GET /state_ids/{roomId}?event_id=`: the state before the event and its auth chain, as
   * IDs; 404 when the event is not one of the room's timeline events.
   */
  async stateIds(origin: string, roomId: string, eventId: string): Promise<JsonObject> {
    const room = await this.openRoom(origin, roomId);
    const { stateIds, authChainIds } = await this.#stateAt(room, eventId);
    return { pdu_ids: stateIds, auth_chain_ids: authChainIds };
  }

  /** `GET /state/{roomId}?event_id=`: as `stateIds`, with the PDUs themselves. */
  async state(origin: string, roomId: string, eventId: string): Promise<JsonObject> {
    const room = await this.openRoom(origin, roomId);
    const { stateIds, authChainIds } = await this.#stateAt(room, eventId);
    const [pdus, authChain] = await Promise.all([
      this.#outIds(origin, room, stateIds),
      this.#outIds(origin, room, authChainIds),
    ]);
    return { pdus, auth_chain: authChain };
  }

  /** `GET /event_auth/{roomId}/{eventId}`: the event's full auth chain. */
  async eventAuth(origin: string, roomId: string, eventId: string): Promise<JsonObject> {
    const room = await this.openRoom(origin, roomId);
    const event = await this.#findInRoom(room, eventId);
    const chain = await this.#authChain(room, referencedIds(event.pdu.auth_events));
    const ids = [...new Set([...referencedIds(event.pdu.auth_events), ...chain])];
    return { auth_chain: await this.#outIds(origin, room, ids) };
  }

  /**
   * `GET /backfill/{roomId}?v=&limit=`: the given events and those before them, deepest first
   * (a walk of prev_events by depth, as Synapse's), at most `limit` (capped at 100). Events of
   * other rooms or unknown to us end their branch; none found gives an empty list.
   */
  async backfill(
    origin: string,
    roomId: string,
    from: readonly string[],
    limit: number,
  ): Promise<JsonObject> {
    const room = await this.openRoom(origin, roomId);
    const max = Math.min(Math.max(limit, 0), MAX_BACKFILL_LIMIT);
    const chosen: FoundEvent[] = [];
    const queued = new Set<string>();
    const heap = new MinHeap<FoundEvent>((a, b) =>
      b.pdu.depth - a.pdu.depth || (a.eventId < b.eventId ? -1 : 1)
    );
    const enqueue = async (ids: readonly string[]) => {
      const fresh = ids.filter((id) => !queued.has(id));
      for (const id of fresh) queued.add(id);
      if (fresh.length === 0) return;
      for (const event of await this.#timelineEventsInRoom(room, fresh)) heap.push(event);
    };
    await enqueue(from);
    while (heap.size > 0 && chosen.length < max) {
      const event = heap.pop()!;
      chosen.push(event);
      if (chosen.length < max) await enqueue(referencedIds(event.pdu.prev_events));
    }
    return this.#transaction(await this.#out(origin, room, chosen));
  }

  /**
   * `POST /get_missing_events/{roomId}`: a breadth-first walk of prev_events from
   * `latest_events`, skipping `earliest_events` and events below `min_depth`, at most `limit`
   * (default 10, capped at 20), oldest first.
   */
  async missingEvents(
    origin: string,
    roomId: string,
    query: MissingEventsQuery,
  ): Promise<JsonObject> {
    const room = await this.openRoom(origin, roomId);
    const limit = Math.min(
      Math.max(query.limit ?? DEFAULT_MISSING_EVENTS_LIMIT, 0),
      MAX_MISSING_EVENTS_LIMIT,
    );
    const minDepth = query.minDepth ?? 0;
    const seen = new Set(query.earliestEvents);
    const results: FoundEvent[] = [];
    let front = (await this.#timelineEventsInRoom(room, query.latestEvents))
      .filter((e) => !seen.has(e.eventId));
    while (front.length > 0 && results.length < limit) {
      const prevIds: string[] = [];
      for (const event of front) {
        for (const id of referencedIds(event.pdu.prev_events)) {
          if (seen.has(id)) continue;
          seen.add(id);
          prevIds.push(id);
        }
      }
      const prevs = (await this.#timelineEventsInRoom(room, prevIds))
        .filter((e) => e.pdu.depth >= minDepth);
      results.push(...prevs.slice(0, limit - results.length));
      front = prevs;
    }
    // Found newest first; the answer is roughly chronological.
    results.reverse();
    return { events: await this.#out(origin, room, results) };
  }

  /**
   * `GET /timestamp_to_event/{roomId}?ts=&dir=`: the closest event at or after (`f`) or at or
   * before (`b`) `ts` that the origin may see; 404 when there is none.
   */
  async timestampToEvent(
    origin: string,
    roomId: string,
    ts: number,
    dir: Direction,
  ): Promise<{ event_id: string; origin_server_ts: number }> {
    const room = await this.openRoom(origin, roomId);
    const candidates = await this.deps.relations.eventsByTimestamp(
      roomId,
      ts,
      dir,
      MAX_TIMESTAMP_CANDIDATES,
    );
    const found = await this.#timelineEventsInRoom(room, candidates.map((c) => c.eventId));
    const hidden = await this.deps.pipeline.serverHiddenEvents(origin, found);
    const first = found.find((e) => !hidden.has(e.eventId));
    if (!first) {
      const way = dir === "f" ? "forward" : "backward";
      throw notFound(`Unable to find event from ${ts} in ${way} direction`);
    }
    return { event_id: first.eventId, origin_server_ts: first.pdu.origin_server_ts };
  }

  /** The state before a timeline event of the room and that state's auth chain, as IDs. */
  async #stateAt(
    room: OpenRoom,
    eventId: string,
  ): Promise<{ stateIds: string[]; authChainIds: string[] }> {
    const event = await this.#findInRoom(room, eventId);
    // No state is known at an outlier, and none worth serving at a rejected event (Synapse).
    const known = !event.outlier && event.status !== "rejected";
    const state = known ? await this.deps.store.stateAtEvent(eventId, "before") : null;
    if (!state) {
      throw notFound(`No state is known at event ${eventId} in room ${room.roomId}`);
    }
    const stateIds = [...state.values()];
    const chain = await this.#authChain(room, stateIds);
    return { stateIds, authChainIds: [...chain] };
  }

  /** An event of the room (log or outlier); M_NOT_FOUND otherwise (another room's too). */
  async #findInRoom(room: OpenRoom, eventId: string): Promise<FoundEvent> {
    const found = (await this.#find([eventId])).get(eventId);
    if (!found || found.roomId !== room.roomId) {
      throw notFound(`Event ${eventId} not found in room ${room.roomId}`);
    }
    return found;
  }

  /** The room's timeline events among `ids` (outliers are not), in the order given. */
  async #timelineEventsInRoom(room: OpenRoom, ids: readonly string[]): Promise<FoundEvent[]> {
    if (ids.length === 0) return [];
    const found = await this.deps.store.getEvents(ids);
    return ids.flatMap((id) => {
      const event = found.get(id);
      const inLog = event && event.roomId === room.roomId && event.position !== OUTLIER_POSITION;
      return inLog ? [fromLog(event)] : [];
    });
  }

  /** Events by ID from the room logs, then the outliers for those not found there. */
  async #find(ids: readonly string[]): Promise<Map<string, FoundEvent>> {
    const out = new Map<string, FoundEvent>();
    if (ids.length === 0) return out;
    const logged = await this.deps.store.getEvents(ids);
    for (const [id, event] of logged) out.set(id, fromLog(event));
    const rest = ids.filter((id) => !out.has(id));
    if (rest.length > 0) {
      for (const [id, event] of await this.deps.store.findEvents(rest)) out.set(id, event);
    }
    return out;
  }

  /** The auth chain below `ids` (not counting them unless reached), events of the room only. */
  async #authChain(room: OpenRoom, ids: readonly string[]): Promise<Set<string>> {
    const cache = new EventCache(async (id) => {
      const found = (await this.#find([id])).get(id);
      if (!found || found.roomId !== room.roomId) return undefined;
      return toRoomEvent(found.pdu, id, room.version);
    });
    return await authChainOf(ids, cache);
  }

  /** State or auth chain events by ID through the pipeline, whole (those we hold). */
  async #outIds(origin: string, room: OpenRoom, ids: readonly string[]): Promise<JsonObject[]> {
    if (ids.length === 0) return [];
    const found = await this.#find(ids);
    const events = ids.flatMap((id) => {
      const event = found.get(id);
      return event && event.roomId === room.roomId ? [event] : [];
    });
    return await this.deps.pipeline.readForServer(
      { serverName: origin, roomId: room.roomId, version: room.version, whole: true },
      events,
    );
  }

  /** Timeline events through the pipeline, history visibility applied, withheld ones left out. */
  #out(origin: string, room: OpenRoom, events: readonly FoundEvent[]): Promise<JsonObject[]> {
    return this.deps.pipeline.readForServer(
      { serverName: origin, roomId: room.roomId, version: room.version },
      events,
    );
  }

  /** A transaction-shaped answer (`/event`, `/backfill`). */
  #transaction(pdus: JsonObject[]): JsonObject {
    return { origin: this.deps.serverName, origin_server_ts: this.deps.now(), pdus };
  }
}

/** An event as `findEvents` gives it (EventReader hands out outliers at OUTLIER_POSITION). */
function fromLog(event: StoredEvent): FoundEvent {
  return {
    eventId: event.eventId,
    roomId: event.roomId,
    pdu: event.pdu,
    status: event.status,
    outlier: event.position === OUTLIER_POSITION,
  };
}
