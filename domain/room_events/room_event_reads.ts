/**
 * Reading a room's events for clients: one event, an event's context, /messages pages, room
 * state and members. Each chooses stored events and hands them to the read pipeline
 * (read_pipeline.ts), which applies history visibility, redactions, ignored users, the client
 * format and the filter; nothing here formats an event itself.
 */
import type { ClientEvent } from "../protocol/client_event.ts";
import { forbidden, MatrixError, notFound, unsupportedRoomVersion } from "../errors.ts";
import type { RoomEventFilter } from "../protocol/event_filter.ts";
import { splitStateKey, stateKey, type StateMap } from "../protocol/events.ts";
import {
  type Direction,
  type EventReader,
  OUTLIER_POSITION,
  type StoredEvent,
} from "../ports/event_store.ts";
import { type RoomVersion, roomVersion } from "../protocol/room_versions.ts";
import { membershipValue } from "./history_visibility_filter.ts";
import type { IgnoredUsers, ReadPipeline, RoomRead } from "./read_pipeline.ts";
import type { HistoryBackfill } from "../federation/backfill.ts";

/** Who reads: the user and the device (for transaction IDs). */
export interface Reader {
  userId: string;
  deviceId?: string;
}

/** Pages walked at most per /messages request while filters drop everything. */
const MAX_PAGES = 10;

/** A /messages response. */
export interface MessagesPage {
  chunk: ClientEvent[];
  start: string;
  end?: string;
  state?: ClientEvent[];
}

/** A /context response. */
export interface EventContext {
  event: ClientEvent;
  events_before: ClientEvent[];
  events_after: ClientEvent[];
  start: string;
  end: string;
  state: ClientEvent[];
}

/** Filters of `GET /rooms/{roomId}/members`. */
export interface MembersQuery {
  /** A timeline token: members as of that point. */
  at?: string;
  membership?: string;
  notMembership?: string;
}

/**
 * A joined member's profile as `/joined_members` shows it: both keys always, null when the
 * member event has none (as Synapse answers, and clients such as SyTest expect the keys).
 */
export interface JoinedMemberProfile {
  display_name: string | null;
  avatar_url: string | null;
}

/** What a read of one room starts from: its version and the reader's standing. */
interface OpenRoom {
  version: RoomVersion;
  membership: StoredEvent | null;
  ignored: IgnoredUsers;
}

/** Reads of room events, every event through the read pipeline. */
export class RoomEventReads {
  /** Reads over the store and the read pipeline (required: it is the only way out). */
  constructor(
    private readonly store: EventReader,
    private readonly pipeline: ReadPipeline,
    /** Fetches history we lack from other servers when /messages reaches a backward extremity. */
    private readonly history?: HistoryBackfill,
  ) {}

  /**
   * GET /rooms/{roomId}/event/{eventId}: 404 when unknown, elsewhere, or not visible, a room the
   * reader may not see included (the spec's only refusal here, as Synapse answers).
   */
  async event(reader: Reader, roomId: string, eventId: string): Promise<ClientEvent> {
    const room = await this.#open(reader, roomId).catch((error) => {
      if (error instanceof MatrixError && error.status === 403) throw notFound("Event not found");
      throw error;
    });
    const stored = await this.store.getEvent(eventId);
    if (!stored || stored.roomId !== roomId || stored.status !== "accepted") {
      throw notFound("Event not found");
    }
    const { timeline } = await this.pipeline.readClientEvents(
      this.#read(reader, roomId, room, true),
      { timeline: [stored] },
    );
    if (!timeline[0]) throw notFound("Event not found");
    return timeline[0];
  }

  /** GET /rooms/{roomId}/context/{eventId}. */
  async context(
    reader: Reader,
    roomId: string,
    eventId: string,
    limit: number,
    filter: RoomEventFilter,
  ): Promise<EventContext> {
    const room = await this.#open(reader, roomId);
    const stored = await this.store.getEvent(eventId);
    // An outlier (state from before we joined) has no place in the timeline to give context of.
    if (
      !stored || stored.roomId !== roomId || stored.status !== "accepted" ||
      stored.position === OUTLIER_POSITION
    ) {
      throw notFound("Event not found");
    }
    const [event] = (await this.pipeline.readClientEvents(
      this.#read(reader, roomId, room, true),
      { timeline: [stored] },
    )).timeline;
    if (!event) throw notFound("Event not found");
    const beforeLimit = Math.floor(limit / 2);
    const afterLimit = limit - beforeLimit;
    const here = this.store.timelineTokenAt(stored.position);
    const next = this.store.timelineTokenAt(stored.position + 1);
    const [before, after] = await Promise.all([
      beforeLimit > 0
        ? this.#walk(reader, roomId, room, { from: here, dir: "b", limit: beforeLimit }, filter)
        : { events: [], kept: [], end: here },
      afterLimit > 0
        ? this.#walk(reader, roomId, room, { from: next, dir: "f", limit: afterLimit }, filter)
        : { events: [], kept: [], end: next },
    ]);
    const last = after.kept.at(-1) ?? stored;
    const stateAfter = (await this.store.stateAtEvent(last.eventId, "after")) ?? new Map();
    const state = await this.#stateEvents(
      reader,
      roomId,
      room,
      filter.lazy_load_members
        ? lazyMembers(stateAfter, [stored, ...before.kept, ...after.kept])
        : stateAfter,
    );
    return {
      event,
      events_before: before.events,
      events_after: after.events,
      start: before.end ??
        this.store.timelineTokenAt(before.kept.at(-1)?.position ?? stored.position),
      end: after.end ??
        this.store.timelineTokenAt((after.kept.at(-1)?.position ?? stored.position) + 1),
      state,
    };
  }

  /** GET /rooms/{roomId}/messages. */
  async messages(
    reader: Reader,
    roomId: string,
    options: { from?: string; to?: string; dir: Direction; limit: number; filter: RoomEventFilter },
  ): Promise<MessagesPage> {
    const room = await this.#open(reader, roomId);
    const walked = await this.#walk(reader, roomId, room, options, options.filter);
    const page: MessagesPage = { chunk: walked.events, start: walked.start! };
    // A page that read events gets an end even when the log ran out under it, as Synapse
    // answers: only an empty page tells the client there is nothing more (and a token at the
    // last event read stays valid for when more arrives, paging forwards).
    const end = walked.end ??
      (walked.lastPosition === undefined ? undefined : this.store.timelineTokenAt(
        options.dir === "b" ? walked.lastPosition : walked.lastPosition + 1,
      ));
    if (end !== undefined) page.end = end;
    if (options.filter.lazy_load_members) {
      const current = await this.store.currentState(roomId);
      page.state = await this.#stateEvents(
        reader,
        roomId,
        room,
        lazyMembers(current, walked.kept),
      );
    }
    return page;
  }

  /** GET /rooms/{roomId}/state: current state for members, state at leaving for former ones. */
  async state(reader: Reader, roomId: string): Promise<ClientEvent[]> {
    const { room, state } = await this.#visibleState(reader, roomId);
    return this.#stateEvents(reader, roomId, room, state);
  }

  /** GET /rooms/{roomId}/state/{type}/{stateKey}: the state event, or 404. */
  async stateEvent(
    reader: Reader,
    roomId: string,
    type: string,
    key: string,
  ): Promise<ClientEvent> {
    const { room, state } = await this.#visibleState(reader, roomId);
    const id = state.get(stateKey(type, key));
    const [event] = id
      ? await this.#stateEvents(reader, roomId, room, new Map([[stateKey(type, key), id]]))
      : [];
    if (!event) throw notFound(`No ${type} state with key '${key}' in this room`);
    return event;
  }

  /**
   * Member events of a room for `GET /members`. Members see the current list (or as of `at`);
   * former members see it as of their leaving; others only in world-readable rooms.
   */
  async members(reader: Reader, roomId: string, query: MembersQuery): Promise<ClientEvent[]> {
    const head = await this.store.roomHead(roomId);
    if (!head || head.lastPosition === 0) {
      throw notFound(`Room ${roomId} is not known to this server`);
    }
    const room = await this.#open(reader, roomId, head);
    const membership = membershipValue(room.membership);
    let stateMap: StateMap;
    if (membership === "join") {
      stateMap = query.at
        ? await this.#stateAtToken(reader, roomId, room, query.at)
        : await this.store.currentState(roomId);
    } else if (await this.pipeline.worldReadable(roomId)) {
      stateMap = await this.store.currentState(roomId);
    } else if (await this.#formerMember(room)) {
      stateMap = (await this.store.stateAtEvent(room.membership!.eventId, "after")) ?? new Map();
    } else {
      throw forbidden("You are not a member of this room");
    }
    const members: StateMap = new Map(
      [...stateMap].filter(([key]) => splitStateKey(key)[0] === "m.room.member"),
    );
    const events = await this.#stateEvents(reader, roomId, room, members);
    return events.filter((event) => {
      const m = event.content.membership;
      if (query.membership !== undefined && m !== query.membership) return false;
      if (query.notMembership !== undefined && m === query.notMembership) return false;
      return true;
    });
  }

  /** Joined members with their profile, for `GET /joined_members`; only for members. */
  async joinedMembers(
    reader: Reader,
    roomId: string,
  ): Promise<Record<string, JoinedMemberProfile>> {
    const head = await this.store.roomHead(roomId);
    if (!head || head.lastPosition === 0) {
      throw notFound(`Room ${roomId} is not known to this server`);
    }
    const room = await this.#open(reader, roomId, head);
    if (membershipValue(room.membership) !== "join") {
      throw forbidden("You are not joined to this room");
    }
    const members = await this.store.members(roomId, ["join"]);
    const state: StateMap = new Map(
      members.map((m) => [stateKey("m.room.member", m.userId), m.eventId]),
    );
    const joined: Record<string, JoinedMemberProfile> = {};
    for (const event of await this.#stateEvents(reader, roomId, room, state)) {
      if (event.state_key === undefined || event.content.membership !== "join") continue;
      const { displayname, avatar_url } = event.content;
      joined[event.state_key] = {
        display_name: typeof displayname === "string" ? displayname : null,
        avatar_url: typeof avatar_url === "string" ? avatar_url : null,
      };
    }
    return joined;
  }

  /** The room's version and the reader; M_FORBIDDEN for outsiders of non-world-readable rooms. */
  async #open(
    reader: Reader,
    roomId: string,
    known?: Awaited<ReturnType<EventReader["roomHead"]>>,
  ): Promise<OpenRoom> {
    const head = known ?? await this.store.roomHead(roomId);
    if (!head) throw forbidden("You are not in this room");
    const version = roomVersion(head.roomVersion);
    if (!version) throw unsupportedRoomVersion(head.roomVersion);
    const [membership, ignored] = await Promise.all([
      this.pipeline.membershipOf(reader.userId, roomId),
      this.pipeline.ignoredUsers(reader.userId),
    ]);
    if (membershipValue(membership) === undefined && !(await this.pipeline.worldReadable(roomId))) {
      throw forbidden("You are not in this room");
    }
    return { version, membership, ignored };
  }

  /** The state a reader may see: current (joined or world-readable), or as they left it. */
  async #visibleState(reader: Reader, roomId: string) {
    const room = await this.#open(reader, roomId);
    if (
      membershipValue(room.membership) === "join" || (await this.pipeline.worldReadable(roomId))
    ) {
      return { room, state: await this.store.currentState(roomId) };
    }
    if (await this.#formerMember(room)) {
      const state = await this.store.stateAtEvent(room.membership!.eventId, "after");
      if (state) return { room, state };
    }
    throw forbidden("You are not in this room");
  }

  /**
   * Whether the reader left or was banned after being joined: they see the state as they left
   * it. One who never joined (a withdrawn knock, a rejected or withdrawn invite) sees none.
   */
  async #formerMember(room: OpenRoom): Promise<boolean> {
    const membership = membershipValue(room.membership);
    if (!room.membership || (membership !== "leave" && membership !== "ban")) return false;
    return await this.pipeline.wasJoinedBefore(room.membership);
  }

  /** Walk the timeline until `limit` events come out of the pipeline or the log ends. */
  async #walk(
    reader: Reader,
    roomId: string,
    room: OpenRoom,
    options: { from?: string; to?: string; dir: Direction; limit: number },
    filter: RoomEventFilter,
  ): Promise<{
    events: ClientEvent[];
    kept: StoredEvent[];
    start?: string;
    end?: string;
    /** Log position of the last event read, visible or not. */
    lastPosition?: number;
  }> {
    const events: ClientEvent[] = [];
    const kept: StoredEvent[] = [];
    let from = options.from;
    let start: string | undefined;
    let end: string | undefined;
    let lastPosition: number | undefined;
    let backfilled = false;
    // Read once per request: only this request's own backfill changes them meanwhile.
    let extremities: Promise<Map<string, number>> | undefined;
    for (let page = 0; page < MAX_PAGES && events.length < options.limit; page++) {
      const wanted = options.limit - events.length;
      const walked = await this.store.timeline(roomId, {
        from,
        to: options.to,
        dir: options.dir,
        limit: wanted,
      });
      start ??= walked.start;
      lastPosition = walked.events.at(-1)?.position ?? lastPosition;
      const out = await this.pipeline.readClientEvents(
        { ...this.#read(reader, roomId, room, true), filter },
        { timeline: walked.events },
      );
      events.push(...out.timeline);
      kept.push(...out.timelineKept);
      end = walked.end;
      const exhausted = end === undefined;
      // Paging back past a backward extremity (the first event of a room we joined, or the far
      // edge of a hole in the middle) fetches the history we lack from other servers, once per
      // request. It lands below the first position (see domain/federation/backfill.ts), so
      // this walk, or the client's next page, goes on into it. Not with `to`: nothing below
      // the first position lies above it.
      if (
        options.dir === "b" && this.history !== undefined && !backfilled &&
        options.to === undefined
      ) {
        extremities ??= this.store.backwardExtremities(roomId);
        const reached = extremitiesReached(
          await extremities,
          exhausted ? undefined : walked.events.at(-1)?.position,
        );
        if (reached.length > 0) {
          backfilled = true;
          const added = await this.history.backfill(roomId, reached).catch((error) => {
            console.warn("backfill failed", roomId, error);
            return 0;
          });
          const below = lastPosition === undefined
            ? from
            : this.store.timelineTokenAt(lastPosition);
          if (exhausted && added > 0 && below !== undefined) {
            from = below;
            continue;
          }
        }
      }
      if (exhausted) break;
      from = end;
    }
    return { events, kept, start, end, lastPosition };
  }

  /**
   * The state after the last event before `token`, for `/members?at=`. That event must be one
   * the reader may see (as Synapse checks): a token from before a `joined`-visibility join
   * reaches no state from before it, M_FORBIDDEN instead.
   */
  async #stateAtToken(
    reader: Reader,
    roomId: string,
    room: OpenRoom,
    token: string,
  ): Promise<StateMap> {
    let page;
    try {
      page = await this.store.timeline(roomId, { from: token, dir: "b", limit: 1 });
    } catch {
      return await this.store.currentState(roomId);
    }
    const last = page.events[0];
    if (!last) return await this.store.currentState(roomId);
    const { timelineVisible } = await this.pipeline.readRoom(
      this.#read(reader, roomId, room, false),
      { timeline: [last] },
    );
    if (timelineVisible.length === 0) {
      throw forbidden("You may not see the room's members at that point");
    }
    return (await this.store.stateAtEvent(last.eventId, "after")) ??
      await this.store.currentState(roomId);
  }

  /** State events of `state`, sorted by type and state key, through the pipeline. */
  async #stateEvents(
    reader: Reader,
    roomId: string,
    room: OpenRoom,
    state: StateMap,
  ): Promise<ClientEvent[]> {
    const found = await this.store.getEvents([...state.values()]);
    const ordered = [...state].sort(([a], [b]) => compareStateKeys(a, b))
      .flatMap(([, id]) => found.get(id) ?? []);
    const out = await this.pipeline.readClientEvents(
      this.#read(reader, roomId, room, false),
      { state: ordered },
    );
    return out.state;
  }

  #read(reader: Reader, roomId: string, room: OpenRoom, prevContent: boolean): RoomRead {
    return {
      reader,
      roomId,
      version: room.version,
      membership: room.membership,
      ignored: room.ignored,
      prevContent,
      // Timeline reads (/event, /context, /messages) bundle aggregations, as the spec lists.
      aggregations: prevContent,
    };
  }
}

/**
 * The backward extremities a walk down to `lowest` has reached: those cited by an event at or
 * above it, the ones cited lowest first (the walk met them last); every one when the walk has
 * run out of events (all we hold lies above it then).
 */
function extremitiesReached(
  extremities: Map<string, number>,
  lowest: number | undefined,
): string[] {
  return [...extremities]
    .filter(([, position]) => lowest === undefined || position >= lowest)
    .sort(([, a], [, b]) => a - b)
    .map(([id]) => id);
}

/** Member events of the senders of `events` (and of nobody else), from `state`. */
function lazyMembers(state: StateMap, events: readonly StoredEvent[]): StateMap {
  const out: StateMap = new Map();
  for (const event of events) {
    const key = stateKey("m.room.member", event.pdu.sender);
    const id = state.get(key);
    if (id !== undefined) out.set(key, id);
  }
  return out;
}

function compareStateKeys(a: string, b: string): number {
  const [ta, ka] = splitStateKey(a as `${string}\u0000${string}`);
  const [tb, kb] = splitStateKey(b as `${string}\u0000${string}`);
  return ta < tb ? -1 : ta > tb ? 1 : ka < kb ? -1 : ka > kb ? 1 : 0;
}
