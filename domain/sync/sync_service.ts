/**
 * `/sync`: take the barrier, run the rooms stream, then every other stream over the same
 * window (since, upTo], and long-poll when an incremental sync has nothing to say. The watch
 * is registered before each read, so a commit landing during the read wakes the next wait.
 */
import type { Filter } from "../event_filter.ts";
import { invalidParam } from "../errors.ts";
import type { EventStore } from "../ports/event_store.ts";
import type { EventPresenterLike } from "./event_format.ts";
import { applyUnreadCounts, type NotificationCounts, RoomStream } from "./room_stream.ts";
import type { SyncNotifier } from "./sync_notifier.ts";
import { emptySyncResponse, isEmptySyncResponse, type SyncResponse } from "./sync_response.ts";
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
  /** The events area's presenter (redactions, transaction IDs, prev_content), when wired. */
  presenter?: EventPresenterLike;
  /** The user-data area's presence: `set_presence` and last-active on every sync. */
  presence?: { markFromSync(userId: string, setPresence?: string): Promise<void> };
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
  /** Aborted when the client goes away. */
  signal?: AbortSignal;
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
    for (;;) {
      const visible = await this.deps.store.roomsOfUser(params.userId, ["join", "invite", "knock"]);
      const watch = this.deps.notifier.watch(params.userId, visible.map((m) => m.roomId));
      try {
        const response = await this.#read(params, now());
        const remaining = deadline - now();
        const done = params.since === undefined || params.fullState ||
          !isEmptySyncResponse(response) || remaining <= 0 || params.signal?.aborted;
        if (done) return response;
        // Woken: read again (a wake may be spurious, e.g. an event the filter hides).
        if (!(await watch.wait(remaining, params.signal))) return response;
      } finally {
        watch.close();
      }
    }
  }

  async #read(params: SyncParams, now: number): Promise<SyncResponse> {
    const upTo = await this.deps.store.syncBarrier(params.userId);
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
    const joinedRoomIds = await this.#rooms.fill(base, response);
    const request: SyncStreamRequest = { ...base, joinedRoomIds };
    await Promise.all(this.deps.streams.map((stream) => stream.fill(request, response)));
    await applyUnreadCounts(
      this.deps.notificationCounts,
      params.userId,
      response,
      params.filter,
    );
    return response;
  }
}
