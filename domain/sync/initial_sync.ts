/**
 * The legacy snapshots: `GET /initialSync` (every room of the user) and
 * `GET /rooms/{roomId}/initialSync` (one room; how a non-member previews a `world_readable`
 * room). Deprecated in r0, still in the spec. Each room's messages and state come from the room
 * event reads (domain/room_events/room_event_reads.ts), so through the read pipeline;
 * presence, receipts and account data come from the sync stream providers over the window up
 * to a barrier, whose token is `end`: a `from` for `/events` and a `since` for `/sync`.
 *
 * A joined room shows its recent messages and current state; a departed one (left or banned
 * after being joined) what the user saw up to their leave: messages ending at the leave and the
 * state as they left it, and no presence or receipts.
 *
 * Rooms this server is not in show the user's remote membership (an invite received over
 * federation; with `archived`, its rejection) as `/sync` does: an invite like a local one, a
 * rejection as a departed room whose only message is the user's leave.
 */
import type { Filter } from "../protocol/event_filter.ts";
import { forbidden, MatrixError, notFound } from "../errors.ts";
import type { JsonObject } from "../protocol/json.ts";
import { presenceContent } from "../ephemeral/presence_service.ts";
import type { StateMap } from "../protocol/events.ts";
import type { EventStore, StoredEvent } from "../ports/event_store.ts";
import type { RemoteMembershipStore } from "../ports/remote_membership_store.ts";
import type { RoomVisibility } from "../ports/room_directory_store.ts";
import { membershipValue } from "../room_events/history_visibility_filter.ts";
import type { IgnoredUsers, ReadPipeline, RoomRead } from "../room_events/read_pipeline.ts";
import type { Reader } from "../room_events/room_event_reads.ts";
import { type RoomVersion, roomVersion } from "../protocol/room_versions.ts";
import { flattenStreams, legacyPresence } from "./legacy_event_stream.ts";
import { emptySyncResponse, type SyncResponse } from "./sync_response.ts";
import type { SyncStreamProvider, SyncStreamRequest } from "./sync_stream.ts";
import { isAfter, syncTokenAt } from "./sync_token.ts";
import { remoteMembershipEvent, remoteMembershipWins } from "./remote_membership_events.ts";

/** Messages per room when the client names no limit (Synapse's default). */
export const DEFAULT_INITIAL_SYNC_LIMIT = 10;
/** Most messages per room. */
export const MAX_INITIAL_SYNC_LIMIT = 100;
/** Timeline pages walked at most per room while history visibility hides everything. */
const MAX_PAGES = 10;
/** Rooms whose snapshots are built at once. */
const ROOMS_IN_FLIGHT = 8;
/** The sync streams a snapshot shows besides room events. */
const SNAPSHOT_STREAMS = new Set(["receipts", "presence", "account_data"]);

/** What the snapshots read. */
export interface InitialSyncDeps {
  store: EventStore;
  pipeline: ReadPipeline;
  /** Every sync stream provider; the ones named in SNAPSHOT_STREAMS are used. */
  streams: readonly SyncStreamProvider[];
  /** Whether a room is published in the room directory. */
  directory: { visibility(roomId: string): Promise<RoomVisibility> };
  /** Presence: a snapshot marks its reader active, as a sync does (they see themselves online). */
  presence?: { markFromSync(userId: string, setPresence?: string): Promise<void> };
  /** Memberships in rooms this server is not in; absent, only the rooms it holds are shown. */
  remoteMemberships?: Pick<RemoteMembershipStore, "ofUser">;
  now?: () => number;
}

/** A room of the user's snapshot, by their membership event as of the snapshot's barrier. */
interface PlacedRoom {
  roomId: string;
  membership: string;
  event: StoredEvent;
  /** The room's version when it is known only from a remote membership (no log here). */
  remoteVersion?: RoomVersion;
}

/** `messages` of a room snapshot: oldest first; `start` pages back, `end` streams on. */
export interface SnapshotMessages {
  chunk: JsonObject[];
  start: string;
  end: string;
}

/** One room in `/initialSync`, or the `/rooms/{roomId}/initialSync` body. */
export interface RoomSnapshot {
  room_id: string;
  membership?: string;
  visibility?: RoomVisibility;
  messages?: SnapshotMessages;
  state?: JsonObject[];
  account_data?: JsonObject[];
  presence?: JsonObject[];
  receipts?: JsonObject[];
  inviter?: string;
  invite?: JsonObject;
}

/** One room's reads: the pipeline's settings for the reader, and where its log starts. */
interface OpenRoom {
  roomId: string;
  firstPosition: number;
  read: RoomRead;
}

/** The `/initialSync` body. */
export interface InitialSyncResponse {
  end: string;
  rooms: RoomSnapshot[];
  presence: JsonObject[];
  account_data: JsonObject[];
  receipts: JsonObject[];
}

/** Serves both snapshots. */
export class InitialSync {
  readonly #streams: SyncStreamProvider[];

  /** Over the store, the pipeline and the sync streams. */
  constructor(private readonly deps: InitialSyncDeps) {
    this.#streams = deps.streams.filter((s) => SNAPSHOT_STREAMS.has(s.name));
  }

  /** `GET /initialSync`: joined and invited rooms (and left ones with `archived`). */
  async initialSync(
    reader: Reader,
    options: { limit?: number; archived?: boolean },
  ): Promise<InitialSyncResponse> {
    const { store } = this.deps;
    const limit = clampLimit(options.limit);
    await this.deps.presence?.markFromSync(reader.userId);
    const end = await store.syncBarrier(reader.userId);
    const wanted = ["join", "invite", ...(options.archived ? ["leave", "ban"] : [])];
    const [placed, ignored] = await Promise.all([
      this.#placeRooms(reader.userId, wanted, end),
      this.deps.pipeline.ignoredUsers(reader.userId),
    ]);
    // Invites from ignored users are not delivered (spec, "Ignoring Users"), local or remote;
    // the pipeline, which keeps ignored users' state events, would let them through.
    const memberships = placed.filter((m) =>
      m.membership !== "invite" || !ignored.has(m.event.pdu.sender)
    );
    const joined = memberships.filter((m) => m.membership === "join").map((m) => m.roomId);
    const withData = memberships.filter((m) => m.membership !== "invite").map((m) => m.roomId);
    const [streams, rooms] = await Promise.all([
      this.#streamsAt(reader, end, withData),
      runBounded(
        memberships.map((m) => async () => {
          try {
            if (m.remoteVersion) {
              return await this.#remoteSnapshot(reader, m, m.remoteVersion, ignored);
            }
            return await this.#roomSnapshot(reader, m.roomId, m.event, limit, end);
          } catch (error) {
            // A room the user may not read (a rejected invite never joined): left out, as
            // Synapse leaves out a room whose snapshot fails. A storage failure is not hidden.
            if (error instanceof MatrixError) return undefined;
            throw error;
          }
        }),
        ROOMS_IN_FLIGHT,
      ),
    ]);
    const out = rooms.filter((r): r is RoomSnapshot => r !== undefined);
    for (const room of out) {
      if (room.membership === "join" || room.membership === "leave" || room.membership === "ban") {
        room.account_data = roomAccountData(streams, room.room_id);
      }
    }
    const joinedSet = new Set(joined);
    const receipts = flattenStreams(onlyRooms(streams, joinedSet), {
      ephemeral: true,
      accountData: false,
    }).filter((e) => e.type === "m.receipt");
    return {
      end,
      rooms: out,
      presence: streams.presence.events.map(legacyPresence),
      account_data: streams.account_data.events,
      receipts,
    };
  }

  /**
   * `GET /rooms/{roomId}/initialSync`: for a member, the room now; for a former member, the
   * room as they left it; for anyone else, a `world_readable` room now (a peek, without
   * `membership`); otherwise 403.
   */
  async roomInitialSync(
    reader: Reader,
    roomId: string,
    options: { limit?: number },
  ): Promise<RoomSnapshot> {
    const { store, pipeline } = this.deps;
    const limit = clampLimit(options.limit);
    const head = await store.roomHead(roomId);
    if (!head) throw forbidden("You are not in this room");
    const membership = await pipeline.membershipOf(reader.userId, roomId);
    const value = membershipValue(membership);
    const former = membership !== null && (value === "leave" || value === "ban") &&
      await pipeline.wasJoinedBefore(membership);
    let snapshot: RoomSnapshot;
    const end = await store.syncBarrier(reader.userId);
    if (value === "join" || former) {
      snapshot = await this.#roomSnapshot(reader, roomId, membership!, limit, end);
    } else if (await pipeline.worldReadable(roomId)) {
      snapshot = await this.#currentSnapshot(await this.#open(reader, roomId, null), limit, end);
    } else {
      throw forbidden("You are not in this room");
    }
    const departed = snapshot.membership === "leave" || snapshot.membership === "ban";
    const streams = await this.#streamsAt(reader, end, [roomId], !departed);
    snapshot.account_data = roomAccountData(streams, roomId);
    if (departed) {
      snapshot.presence = [];
      snapshot.receipts = [];
    } else {
      snapshot.presence = await this.#membersPresence(roomId, streams);
      snapshot.receipts = flattenStreams(onlyRooms(streams, new Set([roomId])), {
        ephemeral: true,
        accountData: false,
      }).filter((e) => e.type === "m.receipt");
    }
    return snapshot;
  }

  /**
   * The user's rooms with a membership in `wanted`, sorted: the rooms this server holds by the
   * membership projection, and the rooms known only from a remote membership recorded up to
   * `end`, which replaces the projection's entry for a room when it is newer.
   */
  async #placeRooms(userId: string, wanted: readonly string[], end: string): Promise<PlacedRoom[]> {
    const { store } = this.deps;
    const remote = (await this.deps.remoteMemberships?.ofUser(userId) ?? [])
      .filter((m) => !isAfter(m.versionstamp, end));
    // With remote memberships, every local one is read: a newer local leave or join (an
    // invite accepted, then left) must hide the remote invite it followed.
    const local = await store.roomsOfUser(userId, remote.length > 0 ? undefined : wanted);
    const events = await store.getEvents(local.map((m) => m.eventId));
    const byRoom = new Map<string, PlacedRoom>();
    for (const m of local) {
      const event = events.get(m.eventId);
      if (event) byRoom.set(m.roomId, { roomId: m.roomId, membership: m.membership, event });
    }
    for (const m of remote) {
      const version = roomVersion(m.roomVersion);
      if (!version || !remoteMembershipWins(m, byRoom.get(m.roomId)?.event)) continue;
      byRoom.set(m.roomId, {
        roomId: m.roomId,
        membership: m.membership,
        event: remoteMembershipEvent(m),
        remoteVersion: version,
      });
    }
    return [...byRoom.values()]
      .filter((p) => wanted.includes(p.membership))
      .sort((a, b) => (a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0));
  }

  /**
   * A room known only from the user's remote membership: an invite shows the invite event, a
   * rejection (or withdrawn knock) the user's leave as its one message and no state, since the
   * server never held the room. Both through the pipeline.
   */
  async #remoteSnapshot(
    reader: Reader,
    room: PlacedRoom,
    version: RoomVersion,
    ignored: IgnoredUsers,
  ): Promise<RoomSnapshot | undefined> {
    const { event } = room;
    const visibility = await this.deps.directory.visibility(room.roomId);
    const out = await this.deps.pipeline.readRoom({
      reader,
      roomId: room.roomId,
      version,
      membership: event,
      format: "client_v1",
      ignored,
    }, { timeline: [event] });
    const formatted = out.timeline[0];
    if (formatted === undefined) return undefined;
    if (room.membership === "invite") {
      return {
        room_id: room.roomId,
        membership: "invite",
        visibility,
        inviter: event.pdu.sender,
        invite: formatted,
      };
    }
    const token = syncTokenAt(event.versionstamp);
    return {
      room_id: room.roomId,
      membership: room.membership,
      visibility,
      messages: { chunk: [formatted], start: token, end: token },
      state: [],
    };
  }

  /**
   * The presence of the room's joined members, as Synapse shows it: each member's current
   * presence, offline for members who never set one.
   */
  async #membersPresence(roomId: string, streams: SyncResponse): Promise<JsonObject[]> {
    const members = await this.deps.store.members(roomId, ["join"]);
    const known = new Map(streams.presence.events.map((e) => [e.sender, e]));
    const now = this.deps.now?.() ?? Date.now();
    return members.map((m) =>
      legacyPresence(
        known.get(m.userId) ?? {
          type: "m.presence",
          sender: m.userId,
          content: presenceContent({ userId: m.userId, presence: "offline" }, now),
        },
      )
    );
  }

  /** A room the user has a membership in, by that membership. */
  async #roomSnapshot(
    reader: Reader,
    roomId: string,
    membership: StoredEvent,
    limit: number,
    end: string,
  ): Promise<RoomSnapshot> {
    const value = membershipValue(membership) ?? "leave";
    const [visibility, room] = await Promise.all([
      this.deps.directory.visibility(roomId),
      this.#open(reader, roomId, membership),
    ]);
    if (value === "invite") {
      // The invite event itself, through the pipeline (an ignored inviter's is left out above).
      const out = await this.deps.pipeline.readRoom(room.read, { timeline: [membership] });
      return {
        room_id: roomId,
        membership: value,
        visibility,
        inviter: membership.pdu.sender,
        invite: out.timeline[0],
      };
    }
    if (value === "join") {
      const snapshot = await this.#currentSnapshot(room, limit, end);
      return { ...snapshot, membership: value, visibility };
    }
    // Departed: the messages end at the leave (or ban), the state is the state as left.
    const { store } = this.deps;
    const [messages, state] = await Promise.all([
      this.#recentMessages(room, store.timelineTokenAt(membership.position + 1), limit),
      store.stateAtEvent(membership.eventId, "after").then((s) => this.#state(room, s)),
    ]);
    return {
      room_id: roomId,
      membership: value,
      visibility,
      messages: { ...messages, end: syncTokenAt(membership.versionstamp) },
      state,
    };
  }

  /** The room now: its recent messages up to `end`, its current state. */
  async #currentSnapshot(room: OpenRoom, limit: number, end: string): Promise<RoomSnapshot> {
    const { store } = this.deps;
    const [messages, state] = await Promise.all([
      this.#recentMessages(room, undefined, limit, end),
      store.currentState(room.roomId).then((s) => this.#state(room, s)),
    ]);
    return { room_id: room.roomId, messages: { ...messages, end }, state };
  }

  /** What the reads of one room share; `membership` null for a peek. */
  async #open(reader: Reader, roomId: string, membership: StoredEvent | null): Promise<OpenRoom> {
    const { store, pipeline } = this.deps;
    const [head, ignored] = await Promise.all([
      store.roomHead(roomId),
      pipeline.ignoredUsers(reader.userId),
    ]);
    const version = head ? roomVersion(head.roomVersion) : undefined;
    if (!head || !version) throw notFound("Room not found");
    return {
      roomId,
      firstPosition: head.firstPosition,
      read: {
        reader,
        roomId,
        version,
        membership,
        format: "client_v1",
        prevContent: true,
        ignored,
      },
    };
  }

  /**
   * The newest `limit` events the reader may see, walking back from `from` (the live end when
   * absent; events after `upTo` left to the stream), oldest first, and a token to page further
   * back with /messages. Hidden events are walked past, a bounded number of pages.
   */
  async #recentMessages(
    room: OpenRoom,
    from: string | undefined,
    limit: number,
    upTo?: string,
  ): Promise<{ chunk: JsonObject[]; start: string }> {
    const { store, pipeline } = this.deps;
    const pages: JsonObject[][] = [];
    let count = 0;
    let token = from;
    for (let page = 0; page < MAX_PAGES; page++) {
      const walked = await store.timeline(room.roomId, {
        from: token,
        dir: "b",
        limit: Math.max(1, limit - count),
      });
      if (limit === 0) return { chunk: [], start: walked.start };
      const events = walked.events
        .filter((e) => upTo === undefined || !isAfter(e.versionstamp, upTo))
        .reverse();
      const out = await pipeline.readRoom(room.read, { timeline: events });
      pages.unshift(out.timeline);
      count += out.timeline.length;
      if (walked.end === undefined) {
        return { chunk: pages.flat(), start: store.timelineTokenAt(room.firstPosition) };
      }
      token = walked.end;
      if (count >= limit) break;
    }
    return { chunk: pages.flat(), start: token! };
  }

  /** A state snapshot's events through the pipeline. */
  async #state(room: OpenRoom, state: StateMap | null): Promise<JsonObject[]> {
    if (!state || state.size === 0) return [];
    const events = await this.deps.store.getEvents([...state.values()]);
    const out = await this.deps.pipeline.readRoom(room.read, { state: [...events.values()] });
    return out.state;
  }

  /** Receipts, presence and account data as of `end`, for these rooms. */
  async #streamsAt(
    reader: Reader,
    end: string,
    roomIds: readonly string[],
    withEphemeral = true,
  ): Promise<SyncResponse> {
    const request: SyncStreamRequest = {
      userId: reader.userId,
      deviceId: reader.deviceId ?? "",
      upTo: end,
      fullState: false,
      filter: {} as Filter,
      joinedRoomIds: roomIds,
      now: this.deps.now?.() ?? Date.now(),
    };
    const response = emptySyncResponse(end);
    const streams = withEphemeral
      ? this.#streams
      : this.#streams.filter((s) => s.name === "account_data");
    await Promise.all(streams.map((s) => s.fill(request, response)));
    return response;
  }
}

/** A room's account data as the snapshots list it: its tags (`m.tag`) first, as Synapse does. */
function roomAccountData(response: SyncResponse, roomId: string): JsonObject[] {
  const events = response.rooms.join[roomId]?.account_data.events ?? [];
  const tags = events.filter((e) => e.type === "m.tag");
  return [...tags, ...events.filter((e) => e.type !== "m.tag")];
}

/** The response with only these rooms' entries (for the rooms' receipts). */
function onlyRooms(response: SyncResponse, roomIds: ReadonlySet<string>): SyncResponse {
  const join = Object.fromEntries(
    Object.entries(response.rooms.join).filter(([roomId]) => roomIds.has(roomId)),
  );
  return { ...response, rooms: { ...response.rooms, join }, presence: { events: [] } };
}

/** The limit asked for, within bounds (0: no messages, as SyTest checks). */
function clampLimit(limit: number | undefined): number {
  return Math.max(0, Math.min(limit ?? DEFAULT_INITIAL_SYNC_LIMIT, MAX_INITIAL_SYNC_LIMIT));
}

/** Run `tasks` with at most `limit` in flight; results in task order. */
async function runBounded<T>(tasks: readonly (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}
