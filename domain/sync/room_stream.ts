/**
 * The rooms stream: `rooms.join`, `invite`, `leave` and `knock`. Each room the user has a
 * membership in is placed by the membership it had at the barrier. In an incremental sync a
 * room appears when its log has events in (since, upTo] (joined rooms) or when the user's own
 * membership event is in that window (a new invite, join, leave or knock); a room joined in the
 * window gets its full state, like an initial sync.
 */
import { type Filter, roomAllowed } from "../protocol/event_filter.ts";
import { stateKey } from "../protocol/events.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { EventStore, Membership, RoomChanges, StoredEvent } from "../ports/event_store.ts";
import { type RoomVersion, roomVersion } from "../protocol/room_versions.ts";
import type { IgnoredUsers, ReadPipeline, RoomRead } from "../room_events/read_pipeline.ts";
import type { SentMembersStore } from "../ports/sent_members_store.ts";
import type { RemoteMembership, RemoteMembershipStore } from "../ports/remote_membership_store.ts";
import { toClientEvent } from "../protocol/client_event.ts";
import { stateSection } from "./room_state_section.ts";
import { loadTimeline, type TimelineBatch, type TimelineShape } from "./room_timeline.ts";
import { dedupesMembers, SentMembers, type SentMembersScope } from "./sent_members.ts";
import { joinedRoomEntry, type SyncResponse, type UnreadCounts } from "./sync_response.ts";
import type { SyncStreamRequest } from "./sync_stream.ts";
import { isAfter, syncTokenAt } from "./sync_token.ts";

/** Timeline events per room when the filter sets no limit (Synapse's default). */
export const DEFAULT_TIMELINE_LIMIT = 10;
/** Most timeline events per room a filter may ask for. */
export const MAX_TIMELINE_LIMIT = 200;

/** Timeline events per room the filter asks for: its limit (0 allowed), capped. */
export function timelineLimit(filter: Filter): number {
  const limit = filter.room?.timeline?.limit ?? DEFAULT_TIMELINE_LIMIT;
  return Math.min(MAX_TIMELINE_LIMIT, Math.max(0, limit));
}

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
  /**
   * Lazy-loaded member events each device was sent; absent, they are sent on every sync
   * (redundant, which clients accept).
   */
  sentMembers?: SentMembersStore;
  /**
   * Memberships in rooms this server is not in (remote invites, their rejections, knocks);
   * absent, only the membership projection places rooms.
   */
  remoteMemberships?: Pick<RemoteMembershipStore, "ofUser">;
}

/** A room and the membership the user had in it at the barrier. */
interface PlacedRoom {
  roomId: string;
  membership: string;
  event: StoredEvent;
  /** Placed from a remote membership: the room has no log here, only this event. */
  remote?: { roomVersion: string };
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
  readonly #sent: SentMembers;

  /** Over the event store and optional counters. */
  constructor(private readonly deps: RoomStreamDeps) {
    this.#sent = new SentMembers(deps.sentMembers);
  }

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
    const [local, remote] = await Promise.all([
      known ?? this.deps.store.roomsOfUser(request.userId),
      this.deps.remoteMemberships?.ofUser(request.userId) ?? [],
    ]);
    const memberships = local.filter((m) => roomAllowed(roomFilter, m.roomId));
    const placed = mergeRemote(
      await this.#placeAt(memberships, request.upTo),
      remote.filter((m) => roomAllowed(roomFilter, m.roomId)),
      request.upTo,
    );
    const joinedRoomIds = placed.filter((p) => p.membership === "join").map((p) => p.roomId);
    return { placed, joinedRoomIds };
  }

  /**
   * Add the rooms section for rooms placed by `place`; joined rooms' unread counts start on
   * `unread` as soon as the rooms with entries are known. Returns the users who newly share a
   * joined room with the user in an incremental sync (the presence stream sends theirs).
   */
  async fill(
    request: Omit<SyncStreamRequest, "joinedRoomIds">,
    response: SyncResponse,
    placement: RoomPlacement,
    unread?: UnreadCountsReader,
  ): Promise<Set<string>> {
    const newcomers = new Set<string>();
    const { store } = this.deps;
    const { since, upTo, filter } = request;
    const roomFilter = filter.room ?? {};
    const { placed } = placement;
    const joined = placed.filter((p) => p.membership === "join");
    const incremental = since !== undefined;
    const limit = timelineLimit(request.filter);

    // Rooms joined in the window show their recent history, as on an initial sync; a member
    // event in the window may be a profile change of someone joined all along.
    const newlyJoined = new Set<string>();
    if (incremental) {
      await Promise.all(joined.map(async (room) => {
        if (!isAfter(room.event.versionstamp, since)) return;
        if ((await this.#membershipAtSince(room.event, since)) !== "join") {
          newlyJoined.add(room.roomId);
        }
      }));
    }
    // Joined rooms: the window's events (all of them on a full sync or full_state). The
    // reader's ignore list is read once for every room, beside them.
    const [changes, joinedChanges, ignored] = await Promise.all([
      store.roomChanges({
        roomIds: joined.filter((p) => !newlyJoined.has(p.roomId)).map((p) => p.roomId),
        since: request.fullState ? undefined : since,
        upTo,
        limit: Math.max(1, limit),
      }),
      newlyJoined.size === 0
        ? [] as RoomChanges[]
        : store.roomChanges({ roomIds: [...newlyJoined], upTo, limit: Math.max(1, limit) }),
      this.deps.pipeline.ignoredUsers(request.userId),
    ]);
    const changed = new Map([...changes, ...joinedChanges].map((c) => [c.roomId, c]));
    const work: (() => Promise<void>)[] = [];
    const workRooms: string[] = [];
    for (const room of joined) {
      const change = changed.get(room.roomId);
      const joinedNow = newlyJoined.has(room.roomId);
      if (!change && !joinedNow && !(request.fullState && incremental)) {
        if (!incremental) joinedRoomEntry(response, room.roomId); // a room with no events yet
        continue;
      }
      // Entries are created now, in room order, so the response's key order does not depend
      // on which room's reads finish first.
      joinedRoomEntry(response, room.roomId);
      workRooms.push(room.roomId);
      work.push(() =>
        this.#joinedRoom(request, response, room, change, joinedNow, ignored, newcomers)
      );
    }
    unread?.prefetch(workRooms);
    const entries: Promise<void>[] = [runBounded(work, ROOMS_IN_FLIGHT)];

    for (const room of placed) {
      const inWindow = !incremental || isAfter(room.event.versionstamp, since);
      if (!inWindow) continue;
      if (room.membership === "invite" || room.membership === "knock") {
        // Invites from ignored users are not delivered (the pipeline decides).
        entries.push(
          (room.remote
            ? Promise.resolve(roomVersion(room.remote.roomVersion))
            : this.#roomVersion(room.roomId)).then((version) =>
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
          if (room.remote) remoteLeftRoom(request, response, room);
          else entries.push(this.#leftRoom(request, response, room, ignored));
        }
      }
    }
    await Promise.all(entries);
    newcomers.delete(request.userId);
    return newcomers;
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
  #membershipAtToken(
    roomId: string,
    userId: string,
    upTo: string,
  ): Promise<StoredEvent | undefined> {
    return membershipAtToken(this.deps.store, roomId, userId, upTo);
  }

  async #joinedRoom(
    request: Omit<SyncStreamRequest, "joinedRoomIds">,
    response: SyncResponse,
    room: PlacedRoom,
    change: RoomChanges | undefined,
    newlyJoined: boolean,
    ignored: IgnoredUsers,
    newcomers: Set<string>,
  ): Promise<void> {
    const { store } = this.deps;
    const roomId = room.roomId;
    const version = await this.#roomVersion(roomId);
    if (!version) return; // no head: nothing stored to show
    const full = request.since === undefined || request.fullState || newlyJoined;
    const section = await this.#roomSection(request, room, version, ignored, {
      // A room joined in the window shows its recent history, not just the window.
      since: request.fullState || newlyJoined ? undefined : request.since,
      first: change,
      full,
    });
    const { batch } = section;
    const entry = joinedRoomEntry(response, roomId);
    entry.timeline = {
      events: batch.events,
      // A newly joined room's timeline continues none the client holds (a previous stay's
      // included), so it is limited unless it starts at the room's creation, as in Synapse.
      limited: batch.limited ||
        (newlyJoined && batch.kept[0]?.pdu.type !== "m.room.create"),
      prev_batch: batch.prevBatch ??
        (await store.timeline(roomId, { dir: "b", limit: 1 })).start,
    };
    entry.state = { events: section.state };
    const lazy = request.filter.room?.state?.lazy_load_members === true;
    const isMember = (e: StoredEvent) => e.pdu.type === "m.room.member";
    const memberChange = batch.kept.some(isMember) ||
      (batch.limited && section.stateEvents.some(isMember));
    if (lazy && (full || memberChange)) entry.summary = await this.#summary(roomId, request.userId);
    // Who newly shares the room: all its members when the user just joined, else those whose
    // join is in the window (a profile change counts too, as in Synapse: presence once more).
    if (request.since === undefined) return;
    if (newlyJoined) {
      for (const m of await store.members(roomId, ["join"])) newcomers.add(m.userId);
    } else {
      for (const e of batch.walked) {
        if (e.pdu.type !== "m.room.member" || e.pdu.content.membership !== "join") continue;
        if (typeof e.pdu.state_key === "string") newcomers.add(e.pdu.state_key);
      }
    }
  }

  /**
   * One room's timeline (walked through the pipeline until the filter's limit is met) and
   * state section (through the pipeline too), member events already sent left out.
   */
  async #roomSection(
    request: Omit<SyncStreamRequest, "joinedRoomIds">,
    room: PlacedRoom,
    version: RoomVersion,
    ignored: IgnoredUsers,
    window: { since?: string; first?: RoomChanges; full: boolean; end?: StoredEvent },
  ): Promise<{ batch: TimelineBatch; state: JsonObject[]; stateEvents: StoredEvent[] }> {
    const { store, pipeline } = this.deps;
    const filter = request.filter.room ?? {};
    // Bundled aggregations where the client may lack the children: initial syncs, full state
    // and limited timelines (the spec bundles them in /sync "when limited").
    const read: RoomRead = {
      ...this.#read(request, room, version, ignored),
      aggregations: window.since === undefined || window.full || window.first?.limited === true,
    };
    const scope: SentMembersScope = {
      userId: request.userId,
      deviceId: request.deviceId,
      roomId: room.roomId,
      since: request.since,
      fullState: request.fullState,
      upTo: request.upTo,
    };
    const dedupe = dedupesMembers(request.filter);
    const knownRead = dedupe ? this.#sent.known(scope) : Promise.resolve(new Map());
    knownRead.catch(() => {}); // awaited below; a failing timeline read must not orphan it
    const section = async (timeline: TimelineShape) =>
      this.#sent.dropKnown(
        scope,
        await knownRead,
        await stateSection(store, {
          roomId: room.roomId,
          userId: request.userId,
          timeline: timeline.kept,
          walked: timeline.walked,
          complete: timeline.complete,
          full: window.full,
          since: request.since,
          limited: timeline.limited,
          endEvent: window.end,
          filter: filter.state ?? {},
        }),
      );
    const batch = await loadTimeline(store, pipeline, {
      roomId: room.roomId,
      since: window.since,
      first: window.first,
      maxPosition: window.end?.position,
      limit: timelineLimit(request.filter),
      read,
      state: section,
    });
    // Read in the first page's pass when that page was the timeline; else a pass of its own.
    let stateEvents = batch.state?.stored;
    let state = batch.state?.events;
    if (stateEvents === undefined || state === undefined) {
      stateEvents = await section(batch);
      state = stateEvents.length === 0
        ? []
        : (await pipeline.readRoom(read, { state: stateEvents })).state;
    }
    const known = await knownRead;
    if (dedupe) await this.#sent.remember(scope, known, [...stateEvents, ...batch.kept]);
    return { batch, state, stateEvents };
  }

  /** See `membershipAtSince`. */
  #membershipAtSince(event: StoredEvent, since: string): Promise<string | undefined> {
    return membershipAtSince(this.deps.store, event, since);
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
    const version = await this.#roomVersion(room.roomId);
    if (!version) return;
    const since = request.fullState ? undefined : request.since;
    // The timeline stops at the leave: later events are not the user's to see.
    const [[change], atSince] = await Promise.all([
      store.roomChanges({
        roomIds: [room.roomId],
        since,
        upTo: syncTokenAt(room.event.versionstamp),
        limit: Math.max(1, timelineLimit(request.filter)),
      }),
      since === undefined ? undefined : this.#membershipAtSince(room.event, since),
    ]);
    // History visibility decides what of it the user saw (a withdrawn knock or a rejected
    // invite saw nothing but their own membership). Joined and left within the window: the
    // client never had the room's state, so it gets all of it, as for a join.
    const section = await this.#roomSection(request, room, version, ignored, {
      since,
      first: change,
      full: since === undefined || (atSince !== "join" && await this.#joinedBefore(room)),
      end: room.event,
    });
    response.rooms.leave[room.roomId] = {
      timeline: {
        events: section.batch.events,
        limited: section.batch.limited,
        prev_batch: section.batch.prevBatch,
      },
      state: { events: section.state },
      account_data: { events: [] },
    };
  }

  /** Whether the user was joined right before leaving (else they never saw the state). */
  #joinedBefore(room: PlacedRoom): Promise<boolean> {
    return this.deps.pipeline.wasJoinedBefore(room.event);
  }

  /** The room's summary (see `roomSummary`). */
  #summary(roomId: string, userId: string): Promise<JsonObject> {
    return roomSummary(this.deps.store, roomId, userId);
  }
}

/**
 * The user's membership at `since`, from their member event in the window and those before
 * it (a profile change keeps a join); undefined when they had none. Sliding sync tells a room
 * joined after it last sent it the same way.
 */
export async function membershipAtSince(
  store: Pick<EventStore, "stateAtEvent" | "getEvent">,
  event: StoredEvent,
  since: string,
): Promise<string | undefined> {
  const key = stateKey("m.room.member", event.pdu.state_key ?? "");
  let current: StoredEvent | null = event;
  // Each step is one profile change or membership change of the user inside the window.
  for (let step = 0; step < 50 && current; step++) {
    if (!isAfter(current.versionstamp, since)) {
      const membership = current.pdu.content.membership;
      return typeof membership === "string" ? membership : undefined;
    }
    const before = await store.stateAtEvent(current.eventId, "before");
    const prevId = before?.get(key);
    current = prevId ? await store.getEvent(prevId) : null;
  }
  return undefined;
}

/**
 * The user's member event as of sync token `upTo`: from the state after the room's last event
 * not newer than it (the membership projection is current state, which may be newer).
 */
export async function membershipAtToken(
  store: Pick<EventStore, "timeline" | "stateAtEvent" | "getEvent">,
  roomId: string,
  userId: string,
  upTo: string,
): Promise<StoredEvent | undefined> {
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

/**
 * A room's /sync `summary`: heroes (up to 5 other members, by user ID) and member counts; no
 * heroes when the room has a name or canonical alias, which clients show instead (as
 * Synapse's summary does). Sliding sync's heroes and counts come from it too.
 */
export async function roomSummary(
  store: Pick<EventStore, "members" | "currentStateEventIds" | "getEvents">,
  roomId: string,
  userId: string,
): Promise<JsonObject> {
  const [members, named] = await Promise.all([
    store.members(roomId, ["join", "invite"]),
    hasName(store, roomId),
  ]);
  const joinedCount = members.filter((m) => m.membership === "join").length;
  const summary: JsonObject = {
    "m.joined_member_count": joinedCount,
    "m.invited_member_count": members.length - joinedCount,
  };
  if (!named) {
    summary["m.heroes"] = members.map((m) => m.userId).filter((u) => u !== userId).sort()
      .slice(0, 5);
  }
  return summary;
}

/** Whether the room has a non-empty name or canonical alias. */
async function hasName(
  store: Pick<EventStore, "currentStateEventIds" | "getEvents">,
  roomId: string,
): Promise<boolean> {
  const nameKey = stateKey("m.room.name", "");
  const aliasKey = stateKey("m.room.canonical_alias", "");
  const ids = await store.currentStateEventIds(roomId, [nameKey, aliasKey]);
  const events = await store.getEvents([...ids.values()]);
  const name = events.get(ids.get(nameKey) ?? "")?.pdu.content.name;
  const alias = events.get(ids.get(aliasKey) ?? "")?.pdu.content.alias;
  return (typeof name === "string" && name !== "") || (typeof alias === "string" && alias !== "");
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
      // With per-thread counts asked for, the room's counts are the main timeline's (spec).
      const room = threads && c.main ? c.main : c;
      entry.unread_notifications = {
        notification_count: room.notification_count,
        highlight_count: room.highlight_count,
      };
      if (threads) entry.unread_thread_notifications = c.threads ?? {};
    });
  }
}

type RoomCounts = UnreadCounts & { main?: UnreadCounts; threads?: Record<string, UnreadCounts> };

/**
 * Add the user's memberships in rooms this server is not in: each wins over the projection's
 * entry for the room when newer (a remote invite after an earlier stay, a rejection after a
 * local invite); records written after the barrier wait for the next sync.
 */
function mergeRemote(
  placed: PlacedRoom[],
  remote: readonly RemoteMembership[],
  upTo: string,
): PlacedRoom[] {
  if (remote.length === 0) return placed;
  const byRoom = new Map(placed.map((p) => [p.roomId, p]));
  for (const m of remote) {
    if (isAfter(m.versionstamp, upTo)) continue;
    const local = byRoom.get(m.roomId);
    if (local && local.event.versionstamp > m.versionstamp) continue;
    byRoom.set(m.roomId, {
      roomId: m.roomId,
      membership: m.membership,
      event: {
        eventId: m.eventId,
        roomId: m.roomId,
        pdu: m.pdu,
        status: "accepted",
        position: 0,
        versionstamp: m.versionstamp,
      },
      remote: { roomVersion: m.roomVersion },
    });
  }
  return [...byRoom.values()].sort((
    a,
    b,
  ) => (a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0));
}

/**
 * A left room known only from a remote membership (a rejected invite, a withdrawn knock): the
 * user's own leave is all there is to show. It is the reader's own event in a room whose
 * history this server never held, so no history visibility, redaction or ignore list can
 * apply to it; only the client format does.
 */
function remoteLeftRoom(
  request: Omit<SyncStreamRequest, "joinedRoomIds">,
  response: SyncResponse,
  room: PlacedRoom,
): void {
  const version = roomVersion(room.remote!.roomVersion);
  if (!version) return;
  const { unsigned: _unsigned, ...pdu } = room.event.pdu;
  const event = toClientEvent(room.event.eventId, pdu, {
    roomId: room.roomId,
    version,
    now: request.now,
  });
  response.rooms.leave[room.roomId] = {
    timeline: {
      events: [event as unknown as JsonObject],
      limited: false,
      prev_batch: syncTokenAt(room.event.versionstamp),
    },
    state: { events: [] },
    account_data: { events: [] },
  };
}

/** Run `tasks` with at most `limit` in flight; rejects with the first failure. */
async function runBounded(tasks: readonly (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) await tasks[next++]();
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
}
