/**
 * The legacy event stream, `GET /events` (deprecated in r0, still in the spec, and how a
 * non-member peeks into a `world_readable` room with `room_id`). It runs on the sync machinery:
 * the same tokens (`s` + KV versionstamp, so a `/sync` `next_batch` or an initialSync `end` is
 * a valid `from`), the same barrier and long-poll watch, the sync stream providers for typing,
 * receipts, presence and account data, and the read pipeline for every room event.
 *
 * What differs from `/sync` is the order: `/events` is a forward stream. A response holds the
 * oldest events after `from` (at most `limit`, across the rooms, in commit order) and `end` is
 * the commit of the last one, so a client that is behind catches up page by page instead of
 * seeing only the newest events of each room.
 *
 * The user's memberships in rooms this server is not in (an invite received over federation,
 * its rejection, a knock) are streamed too, as `/sync` shows them: the member event, at the
 * commit that recorded it.
 */
import type { Filter } from "../protocol/event_filter.ts";
import { forbidden, invalidParam } from "../errors.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { EventStore, StoredEvent } from "../ports/event_store.ts";
import type { RemoteMembershipStore } from "../ports/remote_membership_store.ts";
import { membershipValue } from "../room_events/history_visibility_filter.ts";
import type { ReadPipeline } from "../room_events/read_pipeline.ts";
import { type RoomVersion, roomVersion } from "../protocol/room_versions.ts";
import { remoteMembershipEvent } from "./remote_membership_events.ts";
import type { SyncNotifier, SyncWatch } from "./sync_notifier.ts";
import { emptySyncResponse, type SyncResponse } from "./sync_response.ts";
import { MAX_SYNC_TIMEOUT_MS } from "./sync_service.ts";
import type { SyncStreamProvider, SyncStreamRequest } from "./sync_stream.ts";
import { checkSyncToken, isAfter, syncTokenAt } from "./sync_token.ts";

/** Events per response when the client names no limit. */
export const DEFAULT_EVENT_STREAM_LIMIT = 100;
/** Most room events per response. */
export const MAX_EVENT_STREAM_LIMIT = 500;
/**
 * Events read per room beyond `limit`: a commit's events share one versionstamp, so a cut
 * inside the last commit read of a room would split it. Rooms read short are cut before their
 * last commit instead; only a single commit of more than `limit + COMMIT_SLACK` events in one
 * room (a createRoom with about a hundred invites) could still be split.
 */
const COMMIT_SLACK = 100;

/** The sync streams `/events` carries besides room events (Synapse's event sources). */
const EPHEMERAL_STREAMS = new Set(["typing", "receipts", "presence", "account_data"]);

/** What the event stream reads. */
export interface LegacyEventStreamDeps {
  store: EventStore;
  notifier: SyncNotifier;
  /** Every sync stream provider; the ones named in EPHEMERAL_STREAMS are used. */
  streams: readonly SyncStreamProvider[];
  /** The read pipeline every room event goes through. */
  pipeline: ReadPipeline;
  /** Presence: a stream request marks the user active, as a sync does. */
  presence?: { markFromSync(userId: string, setPresence?: string): Promise<void> };
  /** Memberships in rooms this server is not in; absent, only the rooms it holds stream. */
  remoteMemberships?: Pick<RemoteMembershipStore, "ofUser">;
  now?: () => number;
}

/** One `/events` request, validated. */
export interface EventStreamParams {
  userId: string;
  deviceId?: string;
  /** A sync token; absent: from now. */
  from?: string;
  timeoutMs: number;
  limit?: number;
  /** Stream one room only: a joined room, or a `world_readable` one to peek into. */
  roomId?: string;
  /** Aborted when the client goes away (asked for only before a wait). */
  clientGone?: () => AbortSignal;
}

/** The `/events` response. */
export interface EventStreamChunk {
  chunk: JsonObject[];
  start: string;
  end: string;
}

/** A room the stream covers, and the last position the user may be streamed in it. */
interface StreamRoom {
  roomId: string;
  /** The user's membership event when it ends their view (left, invited...): stop there. */
  until?: StoredEvent;
}

/** The rooms a request streams, and whether it peeks. */
interface Scope {
  rooms: StreamRoom[];
  /** Rooms whose typing, receipts and room account data are streamed. */
  joinedRoomIds: string[];
  peeking: boolean;
  /**
   * The user's member events in rooms this server is not in, by event ID, with the room's
   * version: each is streamed at the commit that recorded it.
   */
  remote: Map<string, { event: StoredEvent; version: RoomVersion }>;
}

/** Serves `GET /events`. */
export class LegacyEventStream {
  readonly #streams: SyncStreamProvider[];

  /** Over the sync machinery's pieces. */
  constructor(private readonly deps: LegacyEventStreamDeps) {
    this.#streams = deps.streams.filter((s) => EPHEMERAL_STREAMS.has(s.name));
  }

  /** Answer one request: at once when there is news, else when news arrives or at the timeout. */
  async events(params: EventStreamParams): Promise<EventStreamChunk> {
    if (params.from !== undefined) {
      try {
        checkSyncToken(params.from);
      } catch {
        throw invalidParam("Bad pagination from parameter");
      }
    }
    const limit = Math.max(
      1,
      Math.min(params.limit ?? DEFAULT_EVENT_STREAM_LIMIT, MAX_EVENT_STREAM_LIMIT),
    );
    const { store } = this.deps;
    const now = () => this.deps.now?.() ?? Date.now();
    // A peek's access is checked before anything is written (a refused one marks no presence).
    if (params.roomId !== undefined) await this.#scope(params);
    await this.deps.presence?.markFromSync(params.userId);
    // Without `from` the stream starts now: at the first read's barrier, so it is empty.
    let start = params.from;
    const deadline = now() + Math.max(0, Math.min(params.timeoutMs, MAX_SYNC_TIMEOUT_MS));
    for (;;) {
      // Registered before the barrier and the read of the user's rooms, so a commit landing
      // during them (a join included: the notifier wakes the joining user) wakes the wait.
      const watch: SyncWatch = this.deps.notifier.watch(
        params.userId,
        params.roomId !== undefined ? [params.roomId] : await this.#watchedRooms(params.userId),
      );
      try {
        const upTo = await store.syncBarrier(params.userId);
        start ??= upTo;
        if (start > upTo) {
          throw invalidParam("from token is from the future (another server, or a reset database)");
        }
        const scope = await this.#scope(params);
        const result = await this.#read(params, scope, start, upTo, limit, now());
        const remaining = deadline - now();
        if (result.chunk.length > 0 || remaining <= 0) return result;
        const signal = params.clientGone?.();
        if (signal?.aborted) return result;
        // Other processes' commits after the barrier (all of which was read) wake it too.
        watch.wakeAfter(upTo);
        if (!(await watch.wait(remaining, signal))) return result;
      } finally {
        watch.close();
      }
    }
  }

  /** Rooms whose changes wake a waiting stream: the ones the user is in, invited to or knocking on. */
  async #watchedRooms(userId: string): Promise<string[]> {
    const memberships = await this.deps.store.roomsOfUser(userId, ["join", "invite", "knock"]);
    return memberships.map((m) => m.roomId);
  }

  /**
   * The rooms to stream. With `room_id`: that room, when the user is joined or it is
   * `world_readable` (a peek), else 403 as Synapse answers. Without: every joined room, and the
   * rooms whose membership event (a leave, an invite...) may still be in the window, up to it.
   */
  async #scope(params: EventStreamParams): Promise<Scope> {
    const { store, pipeline } = this.deps;
    if (params.roomId !== undefined) {
      const roomId = params.roomId;
      const membership = await pipeline.membershipOf(params.userId, roomId);
      if (membershipValue(membership) === "join") {
        return { rooms: [{ roomId }], joinedRoomIds: [roomId], peeking: false, remote: new Map() };
      }
      if (!(await store.roomHead(roomId)) || !(await pipeline.worldReadable(roomId))) {
        throw forbidden("Non-joined access not allowed");
      }
      return { rooms: [{ roomId }], joinedRoomIds: [roomId], peeking: true, remote: new Map() };
    }
    const [memberships, remoteMemberships] = await Promise.all([
      store.roomsOfUser(params.userId),
      this.deps.remoteMemberships?.ofUser(params.userId) ?? [],
    ]);
    const events = await store.getEvents(memberships.map((m) => m.eventId));
    const rooms: StreamRoom[] = [];
    const joinedRoomIds: string[] = [];
    for (const m of memberships) {
      if (m.membership === "join") {
        rooms.push({ roomId: m.roomId });
        joinedRoomIds.push(m.roomId);
        continue;
      }
      const until = events.get(m.eventId);
      if (until) rooms.push({ roomId: m.roomId, until });
    }
    const remote = new Map<string, { event: StoredEvent; version: RoomVersion }>();
    for (const m of remoteMemberships) {
      const version = roomVersion(m.roomVersion);
      if (version) remote.set(m.eventId, { event: remoteMembershipEvent(m), version });
    }
    return { rooms, joinedRoomIds, peeking: false, remote };
  }

  /** One pass over the window (from, upTo]: room events first, cut at `limit`, then the rest. */
  async #read(
    params: EventStreamParams,
    scope: Scope,
    from: string,
    upTo: string,
    limit: number,
    now: number,
  ): Promise<EventStreamChunk> {
    // A room the user stopped seeing before the window has nothing for it.
    const rooms = scope.rooms.filter((r) => !r.until || isAfter(r.until.versionstamp, from));
    const perRoom = await this.#oldestInWindow(rooms, from, upTo, limit + COMMIT_SLACK);
    // A remote membership is one event, committed alone: never read short.
    for (const { event } of scope.remote.values()) {
      if (isAfter(event.versionstamp, from) && !isAfter(event.versionstamp, upTo)) {
        perRoom.push({ roomId: event.roomId, events: [event], short: false });
      }
    }
    const { taken, end } = cutAtCommit(perRoom, limit, upTo);
    const chunk = await this.#throughPipeline(params, scope, taken);
    chunk.push(...await this.#ephemeral(params, scope, from, end, now));
    return { chunk, start: from, end };
  }

  /**
   * Each room's oldest events in (from, upTo], at most `cap`, oldest first (a room's stop at the
   * user's membership event applied). `short` marks rooms that have more after the last one.
   */
  async #oldestInWindow(
    rooms: readonly StreamRoom[],
    from: string,
    upTo: string,
    cap: number,
  ): Promise<RoomSupply[]> {
    const { store } = this.deps;
    const byId = new Map(rooms.map((r) => [r.roomId, r]));
    const changes = await store.roomChanges({
      roomIds: [...byId.keys()],
      since: from,
      upTo,
      limit: cap,
    });
    return await Promise.all(changes.map(async (change) => {
      const room = byId.get(change.roomId)!;
      let events = change.events;
      let short = false;
      if (change.limited) {
        // More than `cap` in the window: roomChanges gave the newest; read the oldest instead.
        const first = await this.#firstPositionAfter(change.roomId, from, events[0].position);
        const page = await store.timeline(change.roomId, {
          from: store.timelineTokenAt(first),
          dir: "f",
          limit: cap,
        });
        events = page.events.filter((e) => !isAfter(e.versionstamp, upTo));
        short = events.length === cap;
      }
      if (room.until) {
        const stop = room.until.position;
        const before = events.length;
        events = events.filter((e) => e.position <= stop);
        if (events.length < before) short = false;
      }
      return { roomId: change.roomId, events, short };
    }));
  }

  /**
   * The lowest forward position whose event is newer than `from`, found by bisection between
   * the first forward position (1) and `known`, a position known to be newer: forward positions
   * are appended in commit order, so versionstamps grow with them. log2(room length) reads,
   * instead of walking a long gap back from its newest end.
   */
  async #firstPositionAfter(roomId: string, from: string, known: number): Promise<number> {
    const { store } = this.deps;
    let lo = 1;
    let hi = known;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const page = await store.timeline(roomId, {
        from: store.timelineTokenAt(mid),
        dir: "f",
        limit: 1,
      });
      const found = page.events[0];
      if (found && isAfter(found.versionstamp, from)) hi = mid;
      else lo = Math.max(mid + 1, (found?.position ?? mid) + 1);
    }
    return lo;
  }

  /** The taken events through the read pipeline, room by room, back in stream order. */
  async #throughPipeline(
    params: EventStreamParams,
    scope: Scope,
    taken: readonly StoredEvent[],
  ): Promise<JsonObject[]> {
    const { store, pipeline } = this.deps;
    const ignored = await pipeline.ignoredUsers(params.userId);
    const byRoom = new Map<string, StoredEvent[]>();
    const remote: { event: StoredEvent; version: RoomVersion }[] = [];
    const isRemote = (e: StoredEvent) => scope.remote.get(e.eventId)?.event === e;
    const inLog = new Set(taken.filter((e) => !isRemote(e)).map((e) => e.eventId));
    for (const event of taken) {
      // Invites from ignored users are not delivered (the pipeline keeps state events).
      const pdu = event.pdu;
      if (
        pdu.type === "m.room.member" && pdu.state_key === params.userId &&
        pdu.content.membership === "invite" && ignored.has(pdu.sender)
      ) continue;
      if (isRemote(event)) {
        // Shown once: an invite the room's log holds too (we joined since) is shown from there.
        if (!inLog.has(event.eventId)) remote.push(scope.remote.get(event.eventId)!);
        continue;
      }
      const list = byRoom.get(event.roomId);
      if (list) list.push(event);
      else byRoom.set(event.roomId, [event]);
    }
    const out = new Map<string, JsonObject>();
    await Promise.all([...byRoom].map(async ([roomId, events]) => {
      const head = await store.roomHead(roomId);
      const version = head ? roomVersion(head.roomVersion) : undefined;
      if (!version) return;
      const result = await pipeline.readRoom({
        reader: { userId: params.userId, deviceId: params.deviceId },
        roomId,
        version,
        // A peeker has no membership; the pipeline reads the member's current one.
        membership: scope.peeking ? null : undefined,
        // Synapse's /events serves the legacy format (with `user_id`).
        format: "client_v1",
        prevContent: true,
        ignored,
      }, { timeline: events });
      result.timelineKept.forEach((e, i) => out.set(e.eventId, result.timeline[i]));
    }));
    // A remote membership is the user's own member event in a room with no log here: read
    // alone, as of itself.
    await Promise.all(remote.map(async ({ event, version }) => {
      const result = await pipeline.readRoom({
        reader: { userId: params.userId, deviceId: params.deviceId },
        roomId: event.roomId,
        version,
        membership: event,
        format: "client_v1",
        ignored,
      }, { timeline: [event] });
      if (result.timeline[0] !== undefined) out.set(event.eventId, result.timeline[0]);
    }));
    return taken.flatMap((e) => {
      const event = out.get(e.eventId);
      return event && !(isRemote(e) && inLog.has(e.eventId)) ? [event] : [];
    });
  }

  /**
   * Typing, receipts, presence and account data in (from, end], from the sync providers, as
   * `/events` shows them: per-room entries carry their `room_id`. A peeker gets the room's
   * typing and receipts and its members' presence, and none of their own account data.
   */
  async #ephemeral(
    params: EventStreamParams,
    scope: Scope,
    from: string,
    end: string,
    now: number,
  ): Promise<JsonObject[]> {
    if (from === end) return [];
    const request: SyncStreamRequest = {
      userId: params.userId,
      deviceId: params.deviceId ?? "",
      since: from,
      upTo: end,
      fullState: false,
      filter: {} as Filter,
      joinedRoomIds: scope.joinedRoomIds,
      now,
    };
    const response = emptySyncResponse(end);
    const streams = scope.peeking
      ? this.#streams.filter((s) => s.name !== "account_data")
      : this.#streams;
    await Promise.all(streams.map((s) => s.fill(request, response)));
    return flattenStreams(response, { ephemeral: true, accountData: !scope.peeking });
  }
}

/** One room's supply of events for the cut. */
interface RoomSupply {
  roomId: string;
  events: StoredEvent[];
  /** More of the window follows the last event (it was not all read). */
  short: boolean;
}

/**
 * The oldest `limit` events across rooms in commit order, never splitting a commit, and the
 * token they end at. A room read short may be missing the rest of its last commit, so the cut
 * stays before that commit (unless that would leave nothing: then the commit is taken as read).
 */
export function cutAtCommit(
  rooms: readonly RoomSupply[],
  limit: number,
  upTo: string,
): { taken: StoredEvent[]; end: string } {
  const all = rooms.flatMap((r) => r.events).sort(streamOrder);
  let boundary: string | undefined; // versionstamps at or after it may be incomplete
  for (const room of rooms) {
    const last = room.events.at(-1);
    if (room.short && last && (boundary === undefined || last.versionstamp < boundary)) {
      boundary = last.versionstamp;
    }
  }
  let candidates = boundary === undefined ? all : all.filter((e) => e.versionstamp < boundary);
  if (candidates.length === 0 && boundary !== undefined) {
    candidates = all.filter((e) => e.versionstamp === boundary);
  }
  const cut = boundary !== undefined || candidates.length > limit;
  if (!cut) return { taken: all, end: upTo };
  let n = Math.min(limit, candidates.length);
  // Take the rest of the last commit too.
  while (n < candidates.length && candidates[n].versionstamp === candidates[n - 1].versionstamp) {
    n++;
  }
  const taken = candidates.slice(0, n);
  return { taken, end: syncTokenAt(taken[taken.length - 1].versionstamp) };
}

/** Commit order, then room, then position: the order events were committed in. */
function streamOrder(a: StoredEvent, b: StoredEvent): number {
  if (a.versionstamp !== b.versionstamp) return a.versionstamp < b.versionstamp ? -1 : 1;
  if (a.roomId !== b.roomId) return a.roomId < b.roomId ? -1 : 1;
  return a.position - b.position;
}

/**
 * The non-timeline parts of a sync response as the legacy APIs list them: typing and receipts
 * (`ephemeral`) and room account data with their `room_id`, presence with `content.user_id`
 * (Synapse's legacy format), and global account data.
 */
export function flattenStreams(
  response: SyncResponse,
  include: { ephemeral: boolean; accountData: boolean },
): JsonObject[] {
  const out: JsonObject[] = [];
  for (const [roomId, room] of Object.entries(response.rooms.join)) {
    if (include.ephemeral) {
      for (const event of room.ephemeral.events) out.push({ ...event, room_id: roomId });
    }
    if (include.accountData) {
      for (const event of room.account_data.events) out.push({ ...event, room_id: roomId });
    }
  }
  if (include.ephemeral) out.push(...response.presence.events.map(legacyPresence));
  if (include.accountData) out.push(...response.account_data.events);
  return out;
}

/** A sync presence event in the legacy shape: the user's ID inside the content too. */
export function legacyPresence(event: JsonObject): JsonObject {
  const content = (event.content ?? {}) as JsonObject;
  return { ...event, content: { ...content, user_id: event.sender ?? null } };
}
