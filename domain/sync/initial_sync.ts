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
 */
import type { ClientEvent } from "../client_event.ts";
import type { Filter } from "../event_filter.ts";
import { forbidden, MatrixError, notFound } from "../errors.ts";
import type { JsonObject } from "../json.ts";
import type { EventStore, StoredEvent } from "../ports/event_store.ts";
import type { RoomVisibility } from "../ports/room_directory_store.ts";
import { membershipValue } from "../room_events/history_visibility_filter.ts";
import type { ReadPipeline } from "../room_events/read_pipeline.ts";
import type { Reader, RoomEventReads } from "../room_events/room_event_reads.ts";
import { roomVersion } from "../room_versions.ts";
import { flattenStreams, legacyPresence } from "./legacy_event_stream.ts";
import { emptySyncResponse, type SyncResponse } from "./sync_response.ts";
import type { SyncStreamProvider, SyncStreamRequest } from "./sync_stream.ts";
import { syncTokenAt } from "./sync_token.ts";

/** Messages per room when the client names no limit (Synapse's default). */
export const DEFAULT_INITIAL_SYNC_LIMIT = 10;
/** Most messages per room. */
export const MAX_INITIAL_SYNC_LIMIT = 100;
/** Rooms whose snapshots are built at once. */
const ROOMS_IN_FLIGHT = 8;
/** The sync streams a snapshot shows besides room events. */
const SNAPSHOT_STREAMS = new Set(["receipts", "presence", "account_data"]);

/** What the snapshots read. */
export interface InitialSyncDeps {
  store: EventStore;
  pipeline: ReadPipeline;
  /** /messages and /state reads (through the pipeline). */
  reads: RoomEventReads;
  /** Every sync stream provider; the ones named in SNAPSHOT_STREAMS are used. */
  streams: readonly SyncStreamProvider[];
  /** Whether a room is published in the room directory. */
  directory: { visibility(roomId: string): Promise<RoomVisibility> };
  now?: () => number;
}

/** `messages` of a room snapshot: oldest first; `start` pages back, `end` streams on. */
export interface SnapshotMessages {
  chunk: ClientEvent[];
  start: string;
  end: string;
}

/** One room in `/initialSync`, or the `/rooms/{roomId}/initialSync` body. */
export interface RoomSnapshot {
  room_id: string;
  membership?: string;
  visibility?: RoomVisibility;
  messages?: SnapshotMessages;
  state?: ClientEvent[];
  account_data?: JsonObject[];
  presence?: JsonObject[];
  receipts?: JsonObject[];
  inviter?: string;
  invite?: JsonObject;
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

  /** Over the store, the pipeline, the room reads and the sync streams. */
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
    const end = await store.syncBarrier(reader.userId);
    const wanted = ["join", "invite", ...(options.archived ? ["leave", "ban"] : [])];
    const memberships = (await store.roomsOfUser(reader.userId, wanted))
      .sort((a, b) => (a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0));
    const events = await store.getEvents(memberships.map((m) => m.eventId));
    const joined = memberships.filter((m) => m.membership === "join").map((m) => m.roomId);
    const withData = memberships.filter((m) => m.membership !== "invite").map((m) => m.roomId);
    const [streams, rooms] = await Promise.all([
      this.#streamsAt(reader, end, withData),
      runBounded(
        memberships.map((m) => async () => {
          const event = events.get(m.eventId);
          if (!event) return undefined;
          try {
            return await this.#roomSnapshot(reader, m.roomId, event, limit, end);
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
      snapshot = await this.#joinedSnapshot(reader, roomId, limit, end);
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
      // The room's members (and the reader), as Synapse shows the joined members' presence.
      snapshot.presence = streams.presence.events.map(legacyPresence);
      snapshot.receipts = flattenStreams(onlyRooms(streams, new Set([roomId])), {
        ephemeral: true,
        accountData: false,
      }).filter((e) => e.type === "m.receipt");
    }
    return snapshot;
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
    const visibility = await this.deps.directory.visibility(roomId);
    if (value === "invite") {
      return {
        room_id: roomId,
        membership: value,
        visibility,
        inviter: membership.pdu.sender,
        invite: await this.#inviteEvent(reader, membership),
      };
    }
    if (value === "join") {
      const snapshot = await this.#joinedSnapshot(reader, roomId, limit, end);
      return { ...snapshot, membership: value, visibility };
    }
    // Departed: the messages end at the leave (or ban), the state is the state as left.
    const { store, reads } = this.deps;
    const [page, state] = await Promise.all([
      reads.messages(reader, roomId, {
        from: store.timelineTokenAt(membership.position + 1),
        dir: "b",
        limit,
        filter: {},
      }),
      reads.state(reader, roomId),
    ]);
    return {
      room_id: roomId,
      membership: value,
      visibility,
      messages: {
        chunk: [...page.chunk].reverse(),
        start: page.end ?? await this.#oldestToken(roomId),
        end: syncTokenAt(membership.versionstamp),
      },
      state,
    };
  }

  /** The room now: its recent messages, current state. */
  async #joinedSnapshot(
    reader: Reader,
    roomId: string,
    limit: number,
    end: string,
  ): Promise<RoomSnapshot> {
    const { reads } = this.deps;
    const [page, state] = await Promise.all([
      reads.messages(reader, roomId, { dir: "b", limit, filter: {} }),
      reads.state(reader, roomId),
    ]);
    return {
      room_id: roomId,
      messages: {
        chunk: [...page.chunk].reverse(),
        start: page.end ?? await this.#oldestToken(roomId),
        end,
      },
      state,
    };
  }

  /** The token before the room's first event: paging back from it finds nothing more. */
  async #oldestToken(roomId: string): Promise<string> {
    const head = await this.deps.store.roomHead(roomId);
    return this.deps.store.timelineTokenAt(head?.firstPosition ?? 0);
  }

  /** The invite event itself, through the pipeline (an ignored inviter's invite is dropped). */
  async #inviteEvent(reader: Reader, membership: StoredEvent): Promise<JsonObject | undefined> {
    const head = await this.deps.store.roomHead(membership.roomId);
    const version = head ? roomVersion(head.roomVersion) : undefined;
    if (!version) throw notFound("Room not found");
    const out = await this.deps.pipeline.readRoom({
      reader,
      roomId: membership.roomId,
      version,
      membership,
      format: "client",
    }, { timeline: [membership] });
    return out.timeline[0];
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

/** The limit asked for, within bounds. */
function clampLimit(limit: number | undefined): number {
  return Math.max(1, Math.min(limit ?? DEFAULT_INITIAL_SYNC_LIMIT, MAX_INITIAL_SYNC_LIMIT));
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
