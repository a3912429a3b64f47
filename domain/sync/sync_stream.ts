/**
 * One provider per sync stream, Dendrite-style. The sync service takes the barrier token, runs
 * the rooms stream's placement first (it decides which rooms are joined), then the rooms
 * section and every other provider in parallel over the same window. Each provider adds its
 * stream's entries in (since, upTo] to the response; with no `since` it adds the stream's
 * current state (a full sync).
 *
 * Tokens are opaque strings from the event store's `syncBarrier` (`s` + KV versionstamp); KV
 * adapters turn them back into versionstamps with kv/stream_tokens.ts `parseSyncToken` and
 * compare them with each entry's versionstamp. Fixed width, so they also compare as strings.
 */
import type { Filter } from "../protocol/event_filter.ts";
import type { SyncResponse } from "./sync_response.ts";

/** What one sync request asks of every stream. */
export interface SyncStreamRequest {
  userId: string;
  deviceId: string;
  /** The client's `since` token; absent on a full sync. */
  since?: string;
  /** The barrier token: include entries up to and including it; it is `next_batch`. */
  upTo: string;
  /** The client asked for `full_state`. */
  fullState: boolean;
  filter: Filter;
  /**
   * Rooms the user is joined to now, after the filter's room list: per-room streams (typing,
   * receipts, room account data) add to `rooms.join[roomId]` only for these.
   */
  joinedRoomIds: readonly string[];
  /**
   * On an incremental sync, the users who newly share a joined room with the user in the
   * window (they joined, or the user joined their room); settles once the rooms section is
   * built, so a stream awaiting it runs after the rooms section's reads.
   */
  newcomers?: Promise<ReadonlySet<string>>;
  /** Now, for ages. */
  now: number;
}

/** A stream of sync data: timeline, account data, typing, receipts, presence, to-device... */
export interface SyncStreamProvider {
  /** For logs and tests. */
  readonly name: string;
  /**
   * Add this stream's entries in (since, upTo] (or its current state when `since` is absent)
   * to `response`. Per-room entries go through `joinedRoomEntry(response, roomId)`.
   */
  fill(request: SyncStreamRequest, response: SyncResponse): Promise<void>;
}
