/**
 * The rooms stream: `rooms.join`, `invite`, `leave` and `knock`. Each room the user has a
 * membership in is placed by the membership it had at the barrier. In an incremental sync a
 * room appears when its log has events in (since, upTo] (joined rooms) or when the user's own
 * membership event is in that window (a new invite, join, leave or knock); a room joined in the
 * window gets its full state, like an initial sync.
 */
import { type Filter, roomAllowed } from "../event_filter.ts";
import { stateKey } from "../events.ts";
import type { JsonObject } from "../json.ts";
import type { EventStore, Membership, RoomChanges, StoredEvent } from "../ports/event_store.ts";
import { type RoomVersion, roomVersion } from "../room_versions.ts";
import type { IgnoredUsers, ReadPipeline, RoomRead } from "../room_events/read_pipeline.ts";
import { stateSection } from "./room_state_section.ts";
import { joinedRoomEntry, type SyncResponse, type UnreadCounts } from "./sync_response.ts";
import type { SyncStreamRequest } from "./sync_stream.ts";
import { isAfter, syncTokenAt } from "./sync_token.ts";

/** Timeline events per room when the filter sets no limit (Synapse's default). */
export const DEFAULT_TIMELINE_LIMIT = 10;
/** Most timeline events per room a filter may ask for. */
export const MAX_TIMELINE_LIMIT = 200;

/** Joined rooms whose entries are built at once: enough to overlap KV round trips, few enough
 * that a user in hundreds of rooms does not queue thousands of reads and their garbage. */
const ROOMS_IN_FLIGHT = 16;
/** Room versions remembered; past this the memory is dropped and rebuilt. */
const MAX_REMEMBERED_VERSIONS = 10_000;

/** Unread counts per room, from the push rules' notification counts. */
export interface NotificationCounts {
  countsFor(
    userId: string,
    roomIds: readonly string[],
  ): Promise<Map<string, UnreadCounts & { threads?: Record<string, UnreadCounts> }>>;
}

/** What the rooms stream reads. */
export interface RoomStreamDeps {
  store: EventStore;
  notificationCounts?: NotificationCounts;
  /**
   * The read pipeline every event of the rooms section goes through (visibility, redaction,
   * ignored users, format, filter). Required: sync has no other way to show an event.
   */
  pipeline: ReadPipeline;
}

/** A room and the membership the user had in it at the barrier. */
interface PlacedRoom {
  roomId: string;
  membership: string;
  event: StoredEvent;
}

/** The user's rooms placed at the barrier; from `RoomStream.place`. */
export interface RoomPlacement {
  readonly placed: readonly PlacedRoom[];
  /** Joined rooms, sorted: the other streams' `joinedRoomIds`. */
  readonly joinedRoomIds: string[];
}

/**
 * Builds the rooms section: `place` first (it decides the joined rooms every other stream
 * needs), then `fill` beside the other streams.
 */
export class RoomStream {
  readonly #versions = new Map<string, RoomVersion>();

  /** Over the event store and optional counters. */
  constructor(private readonly deps: RoomStreamDeps) {}

  /**
   * Place each of the user's rooms (after the filter's room list) by its membership at the
   * barrier. `known` is the user's memberships when the caller read them after every commit up
   * to `upTo` completed (a read from before would miss a join committed in between); else they
   * are read here. The joined rooms are what the other streams need, so they can run beside
   * `fill`.
   */
  async place(
    request: Pick<SyncStreamRequest, "userId" | "upTo" | "filter">,
    known?: readonly Membership[],
  ): Promise<RoomPlacement> {
    const roomFilter = request.filter.room ?? {};
    const memberships = (known ?? await this.deps.store.roomsOfUser(request.userId))
      .filter((m) => roomAllowed(roomFilter, m.roomId));
    const placed = await this.#placeAt(memberships, request.upTo);
    const joinedRoomIds = placed.filter((p) => p.membership === "join").map((p) => p.roomId);
    return { placed, joinedRoomIds };
  }

  /**
   * Add the rooms section for rooms placed by `place`; joined rooms' unread counts start on
   * `unread` as soon as the rooms with entries are known.
   */
  async fill(
    request: Omit<SyncStreamRequest, "joinedRoomIds">,
    response: SyncResponse,
    placement: RoomPlacement,
    unread?: UnreadCountsReader,
  ): Promise<void> {
    const { store } = this.deps;
    const { since, upTo, filter } = request;
    const roomFilter = filter.room ?? {};
    const { placed } = placement;
    const joined = placed.filter((p) => p.membership === "join");
    const incremental = since !== undefined;
    const limit = Math.min(
      MAX_TIMELINE_LIMIT,
      Math.max(1, roomFilter.timeline?.limit ?? DEFAULT_TIMELINE_LIMIT),
    );

    // Joined rooms: the window's events (all of them on a full sync or full_state). The
    // reader's ignore list is read once for every room, beside them.
    const [changes, ignored] = await Promise.all([
      store.roomChanges({
        roomIds: joined.map((p) => p.roomId),
        since: request.fullState ? undefined : since,
        upTo,
        limit,
      }),
      this.deps.pipeline.ignoredUsers(request.userId),
    ]);
    const changed = new Map(changes.map((c) => [c.roomId, c]));
    const work: (() => Promise<void>)[] = [];
    const workRooms: string[] = [];
    for (const room of joined) {
      const change = changed.get(room.roomId);
      const newlyJoined = incremental && isAfter(room.event.versionstamp, since);
      if (!change && !newlyJoined && !(request.fullState && incremental)) {
        if (!incremental) joinedRoomEntry(response, room.roomId); // a room with no events yet
        continue;
      }
      const full = !incremental || request.fullState || newlyJoined;
      // Entries are created now, in room order, so the response's key order does not depend
      // on which room's reads finish first.
      joinedRoomEntry(response, room.roomId);
      workRooms.push(room.roomId);
      work.push(() => this.#joinedRoom(request, response, room, change, full, ignored));
    }
    unread?.prefetch(workRooms);
    const entries: Promise<void>[] = [runBounded(work, ROOMS_IN_FLIGHT)];

    for (const room of placed) {
      const inWindow = !incremental || isAfter(room.event.versionstamp, since);
      if (!inWindow) continue;
      if (room.membership === "invite" || room.membership === "knock") {
        // Invites from ignored users are not delivered (the pipeline decides).
        entries.push(
          this.#roomVersion(room.roomId).then((version) =>
            this.deps.pipeline.strippedState(room.event, ignored, version)
          ).then((events) => {
            if (events === undefined) return;
            if (room.membership === "invite") {
              response.rooms.invite[room.roomId] = { invite_state: { events } };
            } else response.rooms.knock[room.roomId] = { knock_state: { events } };
          }),
        );
      } else if (room.membership === "leave" || room.membership === "ban") {
        // A full sync shows left rooms only on request; an incremental one shows the leave.
        if (incremental || roomFilter.include_leave === true) {
          entries.push(this.#leftRoom(request, response, room, ignored));
        }
      }
    }
    await Promise.all(entries);
  }

  /**
   * Each room's membership event as of the barrier. The membership projection is current
   * state, so one written after the barrier is traced back to the state at the barrier.
   */
  async #placeAt(memberships: Membership[], upTo: string): Promise<PlacedRoom[]> {
    const { store } = this.deps;
    const events = await store.getEvents(memberships.map((m) => m.eventId));
    const placed: PlacedRoom[] = [];
    await Promise.all(memberships.map(async (m) => {
      let event = events.get(m.eventId);
      if (!event) return;
      if (isAfter(event.versionstamp, upTo)) {
        const older = await this.#membershipAtToken(m.roomId, m.userId, upTo);
        if (!older) return;
        event = older;
      }
      const membership = event.pdu.content.membership;
      if (typeof membership === "string") {
        placed.push({ roomId: m.roomId, membership, event });
      }
    }));
    return placed.sort((a, b) => (a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0));
  }

  /** The user's member event after the last event not newer than `upTo` (rare: a race). */
  async #membershipAtToken(
    roomId: string,
    userId: string,
    upTo: string,
  ): Promise<StoredEvent | undefined> {
    const { store } = this.deps;
    let from: string | undefined;
    for (;;) {
      const page = await store.timeline(roomId, { from, dir: "b", limit: 50 });
      const last = page.events.find((e) => !isAfter(e.versionstamp, upTo));
      if (last) {
        const state = await store.stateAtEvent(last.eventId, "after");
        const id = state?.get(stateKey("m.room.member", userId));
        return id ? (await store.getEvent(id)) ?? undefined : undefined;
      }
      if (page.end === undefined) return undefined;
      from = page.end;
    }
  }

  async #joinedRoom(
    request: Omit<SyncStreamRequest, "joinedRoomIds">,
    response: SyncResponse,
    room: PlacedRoom,
    change: RoomChanges | undefined,
    full: boolean,
    ignored: IgnoredUsers,
  ): Promise<void> {
    const { store } = this.deps;
    const roomId = room.roomId;
    const filter = request.filter.room ?? {};
    const timeline = change?.events ?? [];
    const [prevBatch, version] = await Promise.all([
      change?.prevBatch ?? store.timeline(roomId, { dir: "b", limit: 1 }).then((p) => p.start),
      this.#roomVersion(roomId),
    ]);
    if (!version) return; // no head: nothing stored to show
    let state: StoredEvent[] = [];
    // One pipeline pass for state and timeline: one redaction and one transaction ID lookup
    // per room. The state section starts where the visible timeline does.
    const out = await this.deps.pipeline.readRoom(this.#read(request, room, version, ignored), {
      timeline,
      state: async (visible) => {
        state = await stateSection(store, {
          roomId,
          userId: request.userId,
          timeline: visible,
          prevBatch,
          full,
          since: request.since,
          limited: change?.limited ?? false,
          filter: filter.state ?? {},
        });
        return state;
      },
    });
    const entry = joinedRoomEntry(response, roomId);
    entry.timeline = {
      events: out.timeline,
      limited: change?.limited ?? false,
      prev_batch: prevBatch,
    };
    entry.state = { events: out.state };
    const lazy = filter.state?.lazy_load_members === true;
    const memberChange = [...out.timelineVisible, ...state].some((e) =>
      e.pdu.type === "m.room.member"
    );
    if (lazy && (full || memberChange)) entry.summary = await this.#summary(roomId, request.userId);
  }

  /** What the pipeline needs for one room of this sync. */
  #read(
    request: Omit<SyncStreamRequest, "joinedRoomIds">,
    room: PlacedRoom,
    version: RoomVersion,
    ignored: IgnoredUsers,
  ): RoomRead {
    const filter = request.filter.room ?? {};
    return {
      reader: { userId: request.userId, deviceId: request.deviceId },
      roomId: room.roomId,
      version,
      // The membership as of the barrier: visibility is judged at the sync's point in time.
      membership: room.event,
      format: request.filter.event_format === "federation" ? "federation" : "client",
      filter: filter.timeline ?? {},
      eventFields: request.filter.event_fields,
      prevContent: true,
      ignored,
    };
  }

  /** A room's version; it never changes, so it is remembered (a head read per room saved). */
  async #roomVersion(roomId: string): Promise<RoomVersion | undefined> {
    const known = this.#versions.get(roomId);
    if (known) return known;
    const head = await this.deps.store.roomHead(roomId);
    const version = head ? roomVersion(head.roomVersion) : undefined;
    if (version) {
      if (this.#versions.size >= MAX_REMEMBERED_VERSIONS) this.#versions.clear();
      this.#versions.set(roomId, version);
    }
    return version;
  }

  async #leftRoom(
    request: Omit<SyncStreamRequest, "joinedRoomIds">,
    response: SyncResponse,
    room: PlacedRoom,
    ignored: IgnoredUsers,
  ): Promise<void> {
    const { store } = this.deps;
    const filter = request.filter.room ?? {};
    const version = await this.#roomVersion(room.roomId);
    if (!version) return;
    const limit = Math.min(
      MAX_TIMELINE_LIMIT,
      Math.max(1, filter.timeline?.limit ?? DEFAULT_TIMELINE_LIMIT),
    );
    // The timeline stops at the leave: later events are not the user's to see.
    const [change] = await store.roomChanges({
      roomIds: [room.roomId],
      since: request.fullState ? undefined : request.since,
      upTo: syncTokenAt(room.event.versionstamp),
      limit,
    });
    const timeline = (change?.events ?? []).filter((e) => e.position <= room.event.position);
    const prevBatch = change?.prevBatch;
    // History visibility decides what of it the user saw (a withdrawn knock or a rejected
    // invite saw nothing but their own membership); the state section starts where the
    // visible timeline does, and a user who never joined sees only state visibility allows.
    const out = await this.deps.pipeline.readRoom(this.#read(request, room, version, ignored), {
      timeline,
      state: (visible) =>
        stateSection(store, {
          roomId: room.roomId,
          userId: request.userId,
          timeline: visible,
          prevBatch: prevBatch ?? "",
          full: request.since === undefined || request.fullState || prevBatch === undefined,
          since: request.since,
          limited: change?.limited ?? false,
          filter: filter.state ?? {},
        }),
    });
    response.rooms.leave[room.roomId] = {
      timeline: {
        events: out.timeline,
        limited: change?.limited ?? false,
        prev_batch: prevBatch,
      },
      state: { events: out.state },
      account_data: { events: [] },
    };
  }

  /** Heroes (up to 5 other members, by user ID) and member counts. */
  async #summary(roomId: string, userId: string): Promise<JsonObject> {
    const members = await this.deps.store.members(roomId, ["join", "invite"]);
    const joinedCount = members.filter((m) => m.membership === "join").length;
    const heroes = members.map((m) => m.userId).filter((u) => u !== userId).sort().slice(0, 5);
    return {
      "m.heroes": heroes,
      "m.joined_member_count": joinedCount,
      "m.invited_member_count": members.length - joinedCount,
    };
  }
}

/**
 * Each joined room's unread counts in a response. A room's count is started as soon as the
 * room is known to be in the response (`prefetch`), so it overlaps the rest of the read;
 * `apply` counts the rooms other streams added (a receipt moves a count) and sets them all.
 * Counts are read as of now, not bounded by the window, wherever they start.
 */
export class UnreadCountsReader {
  readonly #started = new Map<string, Promise<RoomCounts | undefined>>();

  /** Over the counter (none: every room keeps zero counts) for `userId`. */
  constructor(
    private readonly counts: NotificationCounts | undefined,
    private readonly userId: string,
  ) {}

  /** Start counting these rooms (one batch), unless already started. */
  prefetch(roomIds: readonly string[]): void {
    const counts = this.counts;
    const fresh = roomIds.filter((id) => !this.#started.has(id));
    if (!counts || fresh.length === 0) return;
    const batch = counts.countsFor(this.userId, fresh);
    // Handled by `apply`; an unawaited rejection must not go unhandled meanwhile.
    batch.catch(() => {});
    for (const roomId of fresh) this.#started.set(roomId, batch.then((m) => m.get(roomId)));
  }

  /** Set the counts of every joined room in `response`; run after every stream. */
  async apply(response: SyncResponse, filter: Filter): Promise<void> {
    const roomIds = Object.keys(response.rooms.join);
    this.prefetch(roomIds);
    if (!this.counts || roomIds.length === 0) return;
    const threads = filter.room?.timeline?.unread_thread_notifications === true;
    const found = await Promise.all(roomIds.map((roomId) => this.#started.get(roomId)));
    roomIds.forEach((roomId, i) => {
      const c = found[i];
      if (!c) return;
      const entry = response.rooms.join[roomId];
      entry.unread_notifications = {
        notification_count: c.notification_count,
        highlight_count: c.highlight_count,
      };
      if (threads) entry.unread_thread_notifications = c.threads ?? {};
    });
  }
}

type RoomCounts = UnreadCounts & { threads?: Record<string, UnreadCounts> };

/** Run `tasks` with at most `limit` in flight; rejects with the first failure. */
async function runBounded(tasks: readonly (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) await tasks[next++]();
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
}
