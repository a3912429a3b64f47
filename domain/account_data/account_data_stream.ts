/** The account data sync stream: global entries at the top level, room entries per joined room. */
import { matchesEventFilter } from "../protocol/event_filter.ts";
import type { AccountDataStore } from "../ports/account_data_store.ts";
import type { SyncStreamProvider, SyncStreamRequest } from "../sync/sync_stream.ts";
import { joinedRoomEntry, type SyncResponse } from "../sync/sync_response.ts";

/** Adds account data written in the sync window (all of it on a full sync). */
export class AccountDataStream implements SyncStreamProvider {
  readonly name = "account_data";

  /** Read changes from `store`. */
  constructor(private readonly store: Pick<AccountDataStore, "changes">) {}

  async fill(request: SyncStreamRequest, response: SyncResponse): Promise<void> {
    const since = request.fullState ? undefined : request.since;
    const entries = await this.store.changes(request.userId, { since, upTo: request.upTo });
    const joined = new Set(request.joinedRoomIds);
    const globalFilter = request.filter.account_data ?? {};
    const roomFilter = request.filter.room?.account_data ?? {};
    for (const entry of entries) {
      const event = { type: entry.type, content: entry.content };
      const probe = { ...event, sender: request.userId };
      if (entry.roomId === null) {
        if (matchesEventFilter(globalFilter, probe)) response.account_data.events.push(event);
      } else if (joined.has(entry.roomId)) {
        if (!matchesEventFilter(roomFilter, { ...probe, room_id: entry.roomId })) continue;
        joinedRoomEntry(response, entry.roomId).account_data.events.push(event);
      }
    }
  }
}
