/**
 * `POST /search` over room events (the spec's `room_events` category), in the manner of
 * Synapse's handlers/search.py, over the token index of kv/search_projection.ts:
 *
 * 1. the rooms searched are the reader's joined rooms, narrowed by the filter's `rooms` and
 *    `not_rooms` (and by a room group's `next_batch`);
 * 2. each query term matches every indexed term it is a prefix of (Synapse's `term:*`), and an
 *    event must match every query term; one range read per room and term;
 * 3. candidates are ordered by rank (the share of the text's words that match) or by recency
 *    (origin_server_ts, as Synapse orders), and read in that order;
 * 4. every candidate, every context event and every state event goes through the read pipeline
 *    (history visibility, redaction, ignored users, format, the request's filter); an event the
 *    pipeline redacted no longer has the searched text and is dropped.
 *
 * `count` is the number of results the pipeline let through among the candidates this request
 * read (at most MAX_EXAMINED from `next_batch` on), so it says nothing about events the reader
 * may not see; Synapse counts index matches before visibility.
 */
import { type ClientEvent } from "../protocol/client_event.ts";
import { invalidParam, unsupportedRoomVersion } from "../errors.ts";
import { roomAllowed, type RoomEventFilter } from "../protocol/event_filter.ts";
import { stateKey, type StateMap } from "../protocol/events.ts";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import type { EventReader, StoredEvent } from "../ports/event_store.ts";
import type { SearchIndexReader, SearchPosting } from "../ports/search_index.ts";
import type {
  IgnoredUsers,
  PipelineReader,
  ReadPipeline,
  RoomRead,
} from "../room_events/read_pipeline.ts";
import { type RoomVersion, roomVersion } from "../protocol/room_versions.ts";
import {
  matchingWords,
  queryTerms,
  SEARCH_KEYS,
  searchableText,
  type SearchKey,
} from "./search_terms.ts";

/**
 * Index entries read per room and query term; past it, older matches of that term are missed.
 * A search over many rooms reads fewer per room (never under 10), so one request reads about
 * MAX_POSTINGS_PER_SEARCH entries however many rooms the user is in.
 */
export const MAX_POSTINGS_PER_TERM = 5_000;
/** Index entries one search aims to read at most, over all its rooms and terms. */
export const MAX_POSTINGS_PER_SEARCH = 100_000;
/** Candidates one request reads through the pipeline (Synapse's rank search reads 500). */
export const MAX_EXAMINED = 500;
/** Results one page returns at most (the filter's `limit`, 10 by default). */
export const MAX_RESULTS = 100;
/** Context events on either side of a result at most. */
export const MAX_CONTEXT = 50;
/** Context events one page reads at most, all results together (each side shrinks to fit). */
export const MAX_CONTEXT_PER_PAGE = 2_000;
/** Upgrades followed back from a room the filter names. */
const MAX_PREDECESSORS = 10;
/** Rooms whose index is read at once. */
const ROOM_CONCURRENCY = 8;

/** What the client asked for (`search_categories.room_events`). */
export interface RoomEventSearchCriteria {
  searchTerm: string;
  keys?: readonly SearchKey[];
  filter: RoomEventFilter;
  orderBy: "rank" | "recent";
  eventContext?: { beforeLimit: number; afterLimit: number; includeProfile: boolean };
  includeState: boolean;
  groupBy: readonly ("room_id" | "sender")[];
}

/** One matching event before it is read. */
interface Candidate {
  roomId: string;
  position: number;
  ts: number;
  rank: number;
}

/** Where a page continues: after this candidate, in this order, maybe within one room. */
interface PageToken {
  order: "rank" | "recent";
  room?: string;
  after: [rank: number, ts: number, roomId: string, position: number];
}

/** A room opened for reading. */
interface OpenRoom {
  read: RoomRead;
}

/** Full-text search of room events, every event out through the read pipeline. */
export class RoomEventSearch {
  /** Over the event store, its search index and the read pipeline. */
  constructor(
    private readonly deps: {
      store: EventReader;
      index: SearchIndexReader;
      pipeline: ReadPipeline;
    },
  ) {}

  /** The `room_events` result of a search; `nextBatch` continues an earlier one. */
  async search(
    reader: PipelineReader,
    criteria: RoomEventSearchCriteria,
    nextBatch?: string,
  ): Promise<JsonObject> {
    const token = nextBatch === undefined ? undefined : decodeToken(nextBatch, criteria.orderBy);
    const limit = Math.min(Math.max(criteria.filter.limit ?? 10, 1), MAX_RESULTS);
    const terms = queryTerms(criteria.searchTerm);
    const joined = await this.deps.store.roomsOfUser(reader.userId, ["join"]);
    // Rooms named by the filter bring their predecessors along, as Synapse searches them: an
    // upgraded room's history lives in the old room.
    // Only joined rooms are followed back: a room the user is not in is not searched anyway.
    const joinedIds = new Set(joined.map((m) => m.roomId));
    const named = criteria.filter.rooms?.filter((id) => joinedIds.has(id));
    const filter = named
      ? { ...criteria.filter, rooms: await this.#withPredecessors(named) }
      : criteria.filter;
    const roomIds = joined.map((m) => m.roomId).filter((id) =>
      roomAllowed(filter, id) && (token?.room === undefined || token.room === id)
    );
    const empty = { results: [], count: 0, highlights: [] };
    if (terms.length === 0 || roomIds.length === 0) return empty;

    const keys = new Set((criteria.keys ?? SEARCH_KEYS).map((k) => SEARCH_KEYS.indexOf(k)));
    const perTerm = Math.max(
      10,
      Math.min(
        MAX_POSTINGS_PER_TERM,
        Math.floor(MAX_POSTINGS_PER_SEARCH / (roomIds.length * terms.length)),
      ),
    );
    const candidates = (await mapLimited(
      roomIds,
      ROOM_CONCURRENCY,
      (roomId) => this.#roomCandidates(roomId, terms, keys, perTerm),
    )).flat();
    const compare = criteria.orderBy === "rank" ? byRank : byRecent;
    candidates.sort(compare);
    const start = token ? candidates.findIndex((c) => compare(c, candidateOf(token.after)) > 0) : 0;
    const remaining = start < 0 ? [] : candidates.slice(start);
    const examined = remaining.slice(0, MAX_EXAMINED);

    const ignored = await this.deps.pipeline.ignoredUsers(reader.userId);
    const rooms = new Map<string, OpenRoom>();
    const kept = await this.#readCandidates(reader, examined, filter, ignored, rooms);
    const results = kept.slice(0, limit);

    let next: PageToken | undefined;
    const last = kept.length > limit ? results.at(-1)?.candidate : undefined;
    if (last) next = { order: criteria.orderBy, room: token?.room, after: afterOf(last) };
    else if (remaining.length > examined.length) {
      next = { order: criteria.orderBy, room: token?.room, after: afterOf(examined.at(-1)!) };
    }

    const highlights = new Set<string>();
    for (const { event } of results) {
      const text = searchableText(event.type, event.content);
      if (text) { for (const word of matchingWords(text.text, terms)) highlights.add(word); }
    }
    const contexts = criteria.eventContext
      ? await Promise.all(
        results.map((r) => this.#context(r, rooms, contextLimits(criteria, results.length))),
      )
      : undefined;

    const out: JsonObject = {
      results: results.map((r, i) => {
        const entry: JsonObject = {
          rank: r.candidate.rank,
          result: r.event as unknown as JsonObject,
        };
        if (contexts) entry.context = contexts[i];
        return entry;
      }),
      count: kept.length,
      highlights: [...highlights],
    };
    if (next) out.next_batch = encodeToken(next);
    if (criteria.includeState) {
      const state: JsonObject = {};
      for (const roomId of new Set(results.map((r) => r.candidate.roomId))) {
        state[roomId] = await this.#currentState(roomId, rooms) as unknown as JsonObject[];
      }
      out.state = state;
    }
    const groups = this.#groups(results, criteria.groupBy, next);
    if (groups) out.groups = groups;
    return out;
  }

  /** Rooms and the rooms they replaced (m.room.create's `predecessor`), a few upgrades deep. */
  async #withPredecessors(roomIds: readonly string[]): Promise<string[]> {
    const out = new Set(roomIds);
    let next = [...roomIds];
    for (let depth = 0; depth < MAX_PREDECESSORS && next.length > 0; depth++) {
      const found = await Promise.all(next.map(async (roomId) => {
        const id = await this.deps.store.currentStateEventId(roomId, "m.room.create", "");
        const create = id ? await this.deps.store.getEvent(id) : null;
        const predecessor = create?.pdu.content.predecessor;
        const room = isJsonObject(predecessor) ? predecessor.room_id : undefined;
        return typeof room === "string" && !out.has(room) ? room : undefined;
      }));
      next = found.filter((id): id is string => id !== undefined);
      for (const id of next) out.add(id);
    }
    return [...out];
  }

  /** The events of a room matching every term, with their rank. */
  async #roomCandidates(
    roomId: string,
    terms: readonly string[],
    keys: ReadonlySet<number>,
    perTerm: number,
  ): Promise<Candidate[]> {
    const lists = await Promise.all(
      terms.map((t) => this.deps.index.postings(roomId, t, perTerm)),
    );
    // Per term: position -> (occurrences of matching terms, the posting).
    const byTerm = lists.map(({ postings }) => {
      const map = new Map<number, { count: number; posting: SearchPosting }>();
      for (const p of postings) {
        if (!keys.has(p.key)) continue;
        const seen = map.get(p.position);
        map.set(p.position, { count: (seen?.count ?? 0) + p.count, posting: p });
      }
      return map;
    });
    byTerm.sort((a, b) => a.size - b.size);
    const out: Candidate[] = [];
    for (const [position, { posting }] of byTerm[0]) {
      const hits = byTerm.map((map) => map.get(position));
      if (hits.some((hit) => hit === undefined)) continue;
      const matched = hits.reduce((n, hit) => n + hit!.count, 0);
      out.push({
        roomId,
        position,
        ts: posting.ts,
        rank: Math.round((matched / Math.max(posting.words, 1)) * 1e6) / 1e6,
      });
    }
    return out;
  }

  /** Read candidates through the pipeline, room by room, keeping their order. */
  async #readCandidates(
    reader: PipelineReader,
    candidates: readonly Candidate[],
    filter: RoomEventFilter,
    ignored: IgnoredUsers,
    rooms: Map<string, OpenRoom>,
  ): Promise<{ candidate: Candidate; event: ClientEvent; stored: StoredEvent }[]> {
    const perRoom = new Map<string, Candidate[]>();
    for (const c of candidates) {
      const list = perRoom.get(c.roomId);
      if (list) list.push(c);
      else perRoom.set(c.roomId, [c]);
    }
    const found = new Map<string, { event: ClientEvent; stored: StoredEvent }>();
    await mapLimited([...perRoom], ROOM_CONCURRENCY, async ([roomId, list]) => {
      const room = await this.#open(reader, roomId, ignored, rooms);
      if (!room) return;
      const events = await this.deps.index.eventsAt(roomId, list.map((c) => c.position));
      const timeline = [...events.values()].filter((e) => e.status === "accepted")
        .sort((a, b) => a.position - b.position);
      // Results carry bundled aggregations, as the spec lists /search among their readers.
      const read = { ...room.read, filter, aggregations: true };
      const out = await this.deps.pipeline.readRoom(read, { timeline });
      out.timelineKept.forEach((stored, i) => {
        const event = out.timeline[i] as unknown as ClientEvent;
        // Redacted by the pipeline: the text searched for is gone, so is the result.
        if (searchableText(event.type, event.content) === null) return;
        found.set(`${roomId}\u0000${stored.position}`, { event, stored });
      });
    });
    return candidates.flatMap((candidate) => {
      const hit = found.get(`${candidate.roomId}\u0000${candidate.position}`);
      return hit ? [{ candidate, ...hit }] : [];
    });
  }

  /** The room's version and the reader's standing, once per request. */
  async #open(
    reader: PipelineReader,
    roomId: string,
    ignored: IgnoredUsers,
    rooms: Map<string, OpenRoom>,
  ): Promise<OpenRoom | undefined> {
    const known = rooms.get(roomId);
    if (known) return known;
    const head = await this.deps.store.roomHead(roomId);
    if (!head) return undefined;
    const version: RoomVersion | undefined = roomVersion(head.roomVersion);
    if (!version) throw unsupportedRoomVersion(head.roomVersion);
    const membership = await this.deps.pipeline.membershipOf(reader.userId, roomId);
    const room = { read: { reader, roomId, version, membership, ignored } };
    rooms.set(roomId, room);
    return room;
  }

  /** Events around a result, and the senders' profiles as of the last of them. */
  async #context(
    result: { candidate: Candidate; stored: StoredEvent },
    rooms: Map<string, OpenRoom>,
    options: NonNullable<RoomEventSearchCriteria["eventContext"]>,
  ): Promise<JsonObject> {
    const { store, pipeline } = this.deps;
    const { stored } = result;
    const roomId = stored.roomId;
    const room = rooms.get(roomId)!;
    const here = store.timelineTokenAt(stored.position);
    const next = store.timelineTokenAt(stored.position + 1);
    const before = options.beforeLimit;
    const after = options.afterLimit;
    const [back, forward] = await Promise.all([
      before > 0
        ? store.timeline(roomId, { from: here, dir: "b", limit: before })
        : Promise.resolve({ events: [] as StoredEvent[], start: here, end: here }),
      after > 0
        ? store.timeline(roomId, { from: next, dir: "f", limit: after })
        : Promise.resolve({ events: [] as StoredEvent[], start: next, end: next }),
    ]);
    const timeline = [...back.events].reverse().concat(forward.events);
    const out = await pipeline.readRoom({ ...room.read, prevContent: true }, { timeline });
    const eventsBefore: JsonObject[] = [];
    const eventsAfter: JsonObject[] = [];
    out.timelineKept.forEach((e, i) => {
      (e.position < stored.position ? eventsBefore : eventsAfter).push(out.timeline[i]);
    });
    eventsBefore.reverse();
    const context: JsonObject = {
      events_before: eventsBefore,
      events_after: eventsAfter,
      start: back.end ?? store.timelineTokenAt(back.events.at(-1)?.position ?? stored.position),
      end: forward.end ??
        store.timelineTokenAt((forward.events.at(-1)?.position ?? stored.position) + 1),
    };
    if (options.includeProfile) {
      const kept = out.timelineKept.filter((e) => e.position > stored.position);
      const last = kept.at(-1) ?? stored;
      const senders = new Set([stored, ...out.timelineKept].map((e) => e.pdu.sender));
      const stateAfter = (await store.stateAtEvent(last.eventId, "after")) ?? new Map();
      const ids = [...senders].flatMap((s) => stateAfter.get(stateKey("m.room.member", s)) ?? []);
      const members = await store.getEvents(ids);
      const profiles = await pipeline.readRoom(room.read, {
        state: ids.flatMap((id) => members.get(id) ?? []),
      });
      const info: JsonObject = {};
      for (const member of profiles.state) {
        const content = member.content as JsonObject;
        const profile: JsonObject = {};
        if (typeof content.displayname === "string") profile.displayname = content.displayname;
        if (typeof content.avatar_url === "string") profile.avatar_url = content.avatar_url;
        info[member.state_key as string] = profile;
      }
      context.profile_info = info;
    }
    return context;
  }

  /** A result room's current state, through the pipeline. */
  async #currentState(roomId: string, rooms: Map<string, OpenRoom>): Promise<JsonObject[]> {
    const state: StateMap = await this.deps.store.currentState(roomId);
    const events = await this.deps.store.getEvents([...state.values()]);
    const out = await this.deps.pipeline.readRoom(rooms.get(roomId)!.read, {
      state: [...state.values()].flatMap((id) => events.get(id) ?? []),
    });
    return out.state;
  }

  /** The requested groupings of the page's results. */
  #groups(
    results: readonly { candidate: Candidate; event: ClientEvent }[],
    groupBy: readonly string[],
    next: PageToken | undefined,
  ): JsonObject | undefined {
    if (groupBy.length === 0) return undefined;
    const groups: JsonObject = {};
    const build = (keyOf: (r: typeof results[number]) => string, withNext: boolean) => {
      const out: Record<string, { results: string[]; order: number; next_batch?: string }> = {};
      results.forEach((r, i) => {
        const key = keyOf(r);
        const group = out[key] ??= { results: [], order: i + 1 };
        group.results.push(r.event.event_id);
      });
      if (withNext && next) {
        for (const [roomId, group] of Object.entries(out)) {
          group.next_batch = encodeToken({ ...next, room: roomId });
        }
      }
      return out as unknown as JsonObject;
    };
    if (groupBy.includes("room_id")) groups.room_id = build((r) => r.candidate.roomId, true);
    if (groupBy.includes("sender")) groups.sender = build((r) => r.event.sender, false);
    return groups;
  }
}

/** The context asked for, each side capped, and shrunk so a page stays within its budget. */
function contextLimits(
  criteria: RoomEventSearchCriteria,
  results: number,
): NonNullable<RoomEventSearchCriteria["eventContext"]> {
  const asked = criteria.eventContext!;
  let before = Math.min(asked.beforeLimit, MAX_CONTEXT);
  let after = Math.min(asked.afterLimit, MAX_CONTEXT);
  const total = results * (before + after);
  if (total > MAX_CONTEXT_PER_PAGE) {
    const scale = MAX_CONTEXT_PER_PAGE / total;
    before = Math.floor(before * scale);
    after = Math.floor(after * scale);
  }
  return { ...asked, beforeLimit: before, afterLimit: after };
}

function byRank(a: Candidate, b: Candidate): number {
  return b.rank - a.rank || byRecent(a, b);
}

function byRecent(a: Candidate, b: Candidate): number {
  return b.ts - a.ts || (a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0) ||
    b.position - a.position;
}

function afterOf(c: Candidate): PageToken["after"] {
  return [c.rank, c.ts, c.roomId, c.position];
}

function candidateOf([rank, ts, roomId, position]: PageToken["after"]): Candidate {
  return { rank, ts, roomId, position };
}

/** Tokens are base64url JSON: opaque to clients, checked on the way back in. */
function encodeToken(token: PageToken): string {
  const json = JSON.stringify([token.order, token.room ?? null, token.after]);
  return btoa(json).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function decodeToken(text: string, order: "rank" | "recent"): PageToken {
  const bad = () => invalidParam("Invalid next_batch token");
  let data: unknown;
  try {
    data = JSON.parse(atob(text.replaceAll("-", "+").replaceAll("_", "/")));
  } catch {
    throw bad();
  }
  if (!Array.isArray(data) || data.length !== 3) throw bad();
  const [tokenOrder, room, after] = data;
  if (tokenOrder !== order) throw invalidParam("next_batch belongs to a search of another order");
  if (room !== null && typeof room !== "string") throw bad();
  if (
    !Array.isArray(after) || after.length !== 4 || typeof after[0] !== "number" ||
    typeof after[1] !== "number" || typeof after[2] !== "string" ||
    !Number.isSafeInteger(after[3])
  ) throw bad();
  return { order, room: room ?? undefined, after: after as PageToken["after"] };
}

/** Map with at most `limit` calls in flight. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  });
  await Promise.all(workers);
  return out;
}
