/**
 * Reads built on event relationships: `GET /relations/{eventId}[/{relType}[/{eventType}]]`,
 * `GET /threads` and `GET /timestamp_to_event`. Each picks stored events from the relation
 * projections (kv/relation_projection.ts) and hands them to the read pipeline, which decides
 * what the reader may see and formats it, bundled aggregations included.
 */
import type { ClientEvent } from "../protocol/client_event.ts";
import { forbidden, notFound, unsupportedRoomVersion } from "../errors.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { Direction, EventReader, StoredEvent } from "../ports/event_store.ts";
import type { RelationChild, RelationReader } from "../ports/relation_store.ts";
import { threadReplyKey } from "../ports/relation_store.ts";
import { type RoomVersion, roomVersion } from "../protocol/room_versions.ts";
import { membershipValue } from "./history_visibility_filter.ts";
import type { IgnoredUsers, ReadPipeline, RoomRead } from "./read_pipeline.ts";
import { isRedacted } from "./relation_aggregations.ts";
import type { Reader } from "./room_event_reads.ts";

/**
 * Levels of relations `recurse=true` follows: the spec asks for at least 3 and no endless
 * recursion. Children of children are listed level by level.
 */
export const RECURSION_DEPTH = 3;
/** Children gathered at most over all levels of a recursive request. */
const MAX_RECURSIVE_CHILDREN = 1000;
/** Index pages walked per request while the event type filter or visibility drop everything. */
const MAX_PAGES = 10;
/** Timestamp index entries checked for one the reader may see. */
const MAX_TIMESTAMP_CANDIDATES = 200;

/** A /relations request. */
export interface RelationsQuery {
  relType?: string;
  eventType?: string;
  from?: string;
  to?: string;
  dir: Direction;
  limit: number;
  recurse?: boolean;
}

/** A /relations response. */
export interface RelationsPage {
  chunk: ClientEvent[];
  next_batch?: string;
  prev_batch?: string;
  recursion_depth?: number;
}

/** A /threads response. */
export interface ThreadsPage {
  chunk: ClientEvent[];
  next_batch?: string;
}

interface OpenRoom {
  version: RoomVersion;
  membership: StoredEvent | null;
  ignored: IgnoredUsers;
}

/** Relations, threads and events by timestamp, every event through the read pipeline. */
export class RelationReads {
  /** Over the event store, the relation projections and the read pipeline. */
  constructor(
    private readonly deps: {
      store: EventReader;
      relations: RelationReader;
      pipeline: ReadPipeline;
    },
  ) {}

  /** GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]. */
  async relations(
    reader: Reader,
    roomId: string,
    parentId: string,
    query: RelationsQuery,
  ): Promise<RelationsPage> {
    const room = await this.#open(reader, roomId);
    // The parent must be one the reader may see (404 otherwise, as for a missing one).
    const parent = await this.deps.store.getEvent(parentId);
    if (!parent || parent.roomId !== roomId || parent.status !== "accepted") {
      throw notFound("Event not found");
    }
    const { timelineVisible } = await this.deps.pipeline.readRoom(
      this.#read(reader, roomId, room, false),
      { timeline: [parent] },
    );
    if (timelineVisible.length === 0) throw notFound("Event not found");
    const page = query.recurse
      ? await this.#recursive(reader, roomId, room, parentId, query)
      : await this.#direct(reader, roomId, room, parentId, query);
    if (query.from !== undefined) page.prev_batch = query.from;
    return page;
  }

  /** Direct children, a page at a time through the index. */
  async #direct(
    reader: Reader,
    roomId: string,
    room: OpenRoom,
    parentId: string,
    query: RelationsQuery,
  ): Promise<RelationsPage> {
    const chunk: ClientEvent[] = [];
    let from = query.from;
    let next: string | undefined;
    for (let page = 0; page < MAX_PAGES && chunk.length < query.limit; page++) {
      const listed = await this.deps.relations.children(roomId, parentId, {
        relType: query.relType,
        from,
        to: query.to,
        dir: query.dir,
        limit: query.limit - chunk.length,
      });
      const wanted = listed.children.filter((c) => matchesType(c, query.eventType));
      chunk.push(...await this.#present(reader, roomId, room, wanted));
      next = listed.next;
      if (next === undefined) break;
      from = next;
    }
    const out: RelationsPage = { chunk };
    if (next !== undefined) out.next_batch = next;
    return out;
  }

  /**
   * Children up to RECURSION_DEPTH levels down, filtered by rel_type and event type at every
   * level (relations of any type are followed), merged in log order and paginated by position
   * like direct children.
   */
  async #recursive(
    reader: Reader,
    roomId: string,
    room: OpenRoom,
    parentId: string,
    query: RelationsQuery,
  ): Promise<RelationsPage> {
    const { relations } = this.deps;
    const found: RelationChild[] = [];
    const seen = new Set<string>([parentId]);
    let level = [parentId];
    let depth = 0;
    while (level.length > 0 && depth < RECURSION_DEPTH && found.length < MAX_RECURSIVE_CHILDREN) {
      depth++;
      const next: string[] = [];
      for (const id of level) {
        if (found.length >= MAX_RECURSIVE_CHILDREN) break;
        const listed = await relations.children(roomId, id, {
          dir: "f",
          limit: MAX_RECURSIVE_CHILDREN - found.length,
        });
        for (const child of listed.children) {
          if (seen.has(child.eventId)) continue;
          seen.add(child.eventId);
          found.push(child);
          next.push(child.eventId);
        }
      }
      level = next;
    }
    const from = query.from === undefined
      ? undefined
      : await relations.positionOfToken(roomId, query.from);
    const to = query.to === undefined
      ? undefined
      : await relations.positionOfToken(roomId, query.to);
    const inRange = found
      .filter((c) => query.relType === undefined || c.relType === query.relType)
      .filter((c) => matchesType(c, query.eventType))
      .filter((c) => {
        if (query.dir === "b") {
          return (from === undefined || c.position < from) &&
            (to === undefined || c.position >= to);
        }
        return (from === undefined || c.position >= from) && (to === undefined || c.position < to);
      })
      .sort((a, b) => query.dir === "b" ? b.position - a.position : a.position - b.position);
    const picked = inRange.slice(0, query.limit);
    const out: RelationsPage = {
      chunk: await this.#present(reader, roomId, room, picked),
      recursion_depth: depth,
    };
    if (inRange.length > picked.length) {
      const last = picked[picked.length - 1].position;
      out.next_batch = this.deps.store.timelineTokenAt(query.dir === "b" ? last : last + 1);
    }
    return out;
  }

  /** Children through the pipeline, in the order given; redacted ones relate to nothing. */
  async #present(
    reader: Reader,
    roomId: string,
    room: OpenRoom,
    children: readonly RelationChild[],
  ): Promise<ClientEvent[]> {
    if (children.length === 0) return [];
    const found = await this.deps.store.getEvents(children.map((c) => c.eventId));
    const events = children.flatMap((c) => {
      const e = found.get(c.eventId);
      return e && e.roomId === roomId && e.status === "accepted" ? [e] : [];
    });
    const out = await this.deps.pipeline.readClientEvents(
      this.#read(reader, roomId, room, true),
      { timeline: events },
    );
    return out.timeline.filter((e) => !isRedacted(e as unknown as JsonObject));
  }

  /** GET /rooms/{roomId}/threads: thread roots by latest reply, newest first. */
  async threads(
    reader: Reader,
    roomId: string,
    query: { include: "all" | "participated"; from?: string; limit: number },
  ): Promise<ThreadsPage> {
    const room = await this.#open(reader, roomId);
    const { relations, store } = this.deps;
    let before = query.from === undefined
      ? undefined
      : await relations.positionOfToken(roomId, query.from);
    const chunk: ClientEvent[] = [];
    let more = true;
    let lastPosition: number | undefined;
    for (let page = 0; page < MAX_PAGES && chunk.length < query.limit && more; page++) {
      const wanted = query.limit - chunk.length;
      const listed = await relations.threadsByActivity(roomId, { before, limit: wanted });
      more = listed.length === wanted;
      if (listed.length === 0) break;
      before = listed[listed.length - 1].position;
      let roots = listed;
      if (query.include === "participated") {
        const replies = await relations.threadReplies(
          roomId,
          listed.map((t) => ({ rootId: t.rootId, userId: reader.userId })),
        );
        const events = await store.getEvents(listed.map((t) => t.rootId));
        roots = listed.filter((t) =>
          replies.has(threadReplyKey(t.rootId, reader.userId)) ||
          events.get(t.rootId)?.pdu.sender === reader.userId
        );
      }
      const found = await store.getEvents(roots.map((t) => t.rootId));
      const events = roots.flatMap((t) => {
        const e = found.get(t.rootId);
        return e && e.roomId === roomId && e.status === "accepted" ? [e] : [];
      });
      const out = await this.deps.pipeline.readRoom(
        { ...this.#read(reader, roomId, room, true), redactIgnored: true },
        { timeline: events },
      );
      // A thread whose every reply is hidden from the reader is no thread to them.
      out.timeline.forEach((event) => {
        const relations = (event.unsigned as JsonObject | undefined)?.["m.relations"];
        if ((relations as JsonObject | undefined)?.["m.thread"] === undefined) return;
        chunk.push(event as unknown as ClientEvent);
      });
      lastPosition = before;
    }
    const result: ThreadsPage = { chunk };
    if (more && lastPosition !== undefined) {
      result.next_batch = store.timelineTokenAt(lastPosition);
    }
    return result;
  }

  /**
   * GET /rooms/{roomId}/timestamp_to_event: the event closest to `ts` in `dir` that the reader
   * may see, from this server's copy of the room (asking other servers comes with federation).
   */
  async timestampToEvent(
    reader: Reader,
    roomId: string,
    ts: number,
    dir: Direction,
  ): Promise<{ event_id: string; origin_server_ts: number }> {
    const room = await this.#open(reader, roomId);
    const candidates = await this.deps.relations.eventsByTimestamp(
      roomId,
      ts,
      dir,
      MAX_TIMESTAMP_CANDIDATES,
    );
    const found = await this.deps.store.getEvents(candidates.map((c) => c.eventId));
    const events = candidates.flatMap((c) => found.get(c.eventId) ?? []);
    const { timelineVisible } = await this.deps.pipeline.readRoom(
      this.#read(reader, roomId, room, false),
      { timeline: events },
    );
    const first = timelineVisible[0];
    if (!first) {
      const way = dir === "f" ? "forward" : "backward";
      throw notFound(`Unable to find event from ${ts} in ${way} direction`);
    }
    return { event_id: first.eventId, origin_server_ts: first.pdu.origin_server_ts };
  }

  /** The room's version and the reader; M_FORBIDDEN for outsiders of non-world-readable rooms. */
  async #open(reader: Reader, roomId: string): Promise<OpenRoom> {
    const head = await this.deps.store.roomHead(roomId);
    if (!head) throw forbidden("You are not allowed to view this room");
    const version = roomVersion(head.roomVersion);
    if (!version) throw unsupportedRoomVersion(head.roomVersion);
    const { pipeline } = this.deps;
    const [membership, ignored] = await Promise.all([
      pipeline.membershipOf(reader.userId, roomId),
      pipeline.ignoredUsers(reader.userId),
    ]);
    if (membershipValue(membership) === undefined && !(await pipeline.worldReadable(roomId))) {
      throw forbidden("You are not allowed to view this room");
    }
    return { version, membership, ignored };
  }

  #read(reader: Reader, roomId: string, room: OpenRoom, aggregations: boolean): RoomRead {
    return {
      reader,
      roomId,
      version: room.version,
      membership: room.membership,
      ignored: room.ignored,
      aggregations,
    };
  }
}

function matchesType(child: RelationChild, eventType: string | undefined): boolean {
  return eventType === undefined || child.type === eventType;
}
