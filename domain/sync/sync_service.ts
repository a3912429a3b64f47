/**
 * `/sync`: take the barrier, place the user's rooms, then run the rooms stream and every other
 * stream side by side over the same window (since, upTo], and long-poll when an incremental
 * sync has nothing to say. The watch is registered before each read, so a commit landing
 * during the read wakes the next wait; a woken read may skip the barrier (`wokenUpTo`).
 */
import type { Filter } from "../protocol/event_filter.ts";
import { invalidParam } from "../errors.ts";
import type { EventStore, Membership } from "../ports/event_store.ts";
import type { ReadPipeline } from "../room_events/read_pipeline.ts";
import type { SentMembersStore } from "../ports/sent_members_store.ts";
import {
  type NotificationCounts,
  RoomStream,
  type RoomStreamDeps,
  UnreadCountsReader,
} from "./room_stream.ts";
import type { SyncNotifier } from "./sync_notifier.ts";
import { longPoll } from "./long_poll.ts";
import {
  dropEmptyJoinedRooms,
  emptySyncResponse,
  isEmptySyncResponse,
  type SyncResponse,
} from "./sync_response.ts";
import type { SyncStreamProvider, SyncStreamRequest } from "./sync_stream.ts";
import { checkSyncToken } from "./sync_token.ts";

/** Longest long-poll honoured; clients ask for 30 s, a bigger value is cut to this. */
export const MAX_SYNC_TIMEOUT_MS = 120_000;

/** What the sync service reads and calls. */
export interface SyncServiceDeps {
  store: EventStore;
  notifier: SyncNotifier;
  /** Streams besides rooms; read on every sync, so providers added later take part. */
  streams: readonly SyncStreamProvider[];
  notificationCounts?: NotificationCounts;
  /** The read pipeline every room event in the response goes through (required). */
  pipeline: ReadPipeline;
  /** Lazy-loaded member events each device was sent (absent: sent on every sync). */
  sentMembers?: SentMembersStore;
  /** The user-data area's presence: `set_presence` and last-active on every sync. */
  presence?: { markFromSync(userId: string, setPresence?: string): Promise<void> };
  /** Memberships in rooms this server is not in (remote invites, rejections, knocks). */
  remoteMemberships?: RoomStreamDeps["remoteMemberships"];
  now?: () => number;
}

/** One /sync request, validated. */
export interface SyncParams {
  userId: string;
  deviceId: string;
  since?: string;
  timeoutMs: number;
  fullState: boolean;
  filter: Filter;
  setPresence?: string;
  /**
   * Aborted when the client goes away. Asked for only when a long-poll is about to wait, since
   * watching a request's signal has a cost (and a warning) in Deno.serve.
   */
  clientGone?: () => AbortSignal;
}

/** Runs /sync over the event store and the registered streams. */
export class SyncService {
  readonly #rooms: RoomStream;

  /** Over its dependencies. */
  constructor(private readonly deps: SyncServiceDeps) {
    this.#rooms = new RoomStream(deps);
  }

  /** Answer one sync: at once when there is news (or no `since`), else when news arrives or at the timeout. */
  async sync(params: SyncParams): Promise<SyncResponse> {
    if (params.since !== undefined) checkSyncToken(params.since);
    const now = () => this.deps.now?.() ?? Date.now();
    await this.deps.presence?.markFromSync(params.userId, params.setPresence);
    const deadline = now() + Math.max(0, Math.min(params.timeoutMs, MAX_SYNC_TIMEOUT_MS));
    return await longPoll({
      store: this.deps.store,
      notifier: this.deps.notifier,
      userId: params.userId,
      deadline,
      now,
      clientGone: params.clientGone,
      // The first read takes a barrier; a woken one may read up to the commit that woke it,
      // and reuse the memberships read after that commit completed.
      read: async (upTo, memberships) => {
        const response = await this.#read(params, now(), upTo, memberships);
        const done = params.since === undefined || params.fullState ||
          !isEmptySyncResponse(response);
        return { value: response, upTo: response.next_batch, done };
      },
    });
  }

  /** One pass over every stream in (since, upTo]; `upTo` absent: take a barrier first. */
  async #read(
    params: SyncParams,
    now: number,
    knownUpTo?: string,
    memberships?: readonly Membership[],
  ): Promise<SyncResponse> {
    const upTo = knownUpTo ?? await this.deps.store.syncBarrier(params.userId);
    if (params.since !== undefined && params.since > upTo) {
      throw invalidParam("since token is from the future (another server, or a reset database)");
    }
    const response = emptySyncResponse(upTo);
    const base: Omit<SyncStreamRequest, "joinedRoomIds"> = {
      userId: params.userId,
      deviceId: params.deviceId,
      since: params.since,
      upTo,
      fullState: params.fullState,
      filter: params.filter,
      now,
    };
    // Placement decides the joined rooms; then the rooms section and every other stream run
    // side by side (each adds its own fields to a room's entry).
    const placement = await this.#rooms.place(base, memberships);
    const unread = new UnreadCountsReader(this.deps.notificationCounts, params.userId);
    const rooms = this.#rooms.fill(base, response, placement, unread);
    const request: SyncStreamRequest = {
      ...base,
      joinedRoomIds: placement.joinedRoomIds,
      newcomers: params.since === undefined ? undefined : rooms.catch(() => new Set<string>()),
    };
    await Promise.all([
      rooms,
      ...this.deps.streams.map((stream) => stream.fill(request, response)),
    ]);
    await unread.apply(response, params.filter);
    if (params.since !== undefined && !params.fullState) dropEmptyJoinedRooms(response);
    dropLeftUsersStillChanged(response);
    return response;
  }
}

/** Re-exported: the long-poll loop (long_poll.ts) owns it. */
export { wokenUpTo } from "./long_poll.ts";

/**
 * Several streams add to `device_lists` (membership-driven changes, signature notices); a user
 * listed as changed shares a room or was signed, so they must not also be reported as left.
 */
function dropLeftUsersStillChanged(response: SyncResponse): void {
  const lists = response.device_lists;
  if (lists.left.length === 0 || lists.changed.length === 0) return;
  const changed = new Set(lists.changed);
  lists.left = lists.left.filter((userId) => !changed.has(userId));
}
