/**
 * The `device_lists` section of an incremental /sync: whose device lists the client should
 * re-fetch and whom it can stop tracking since its last sync (see DeviceListService). A full
 * sync has nothing to say here: the client fetches every member's keys as it starts tracking.
 */
import type { SyncResponse } from "../sync/sync_response.ts";
import type { SyncStreamProvider, SyncStreamRequest } from "../sync/sync_stream.ts";
import type { DeviceListService } from "./device_list_service.ts";

/** Fills `device_lists.changed` and `device_lists.left`. */
export class DeviceListStream implements SyncStreamProvider {
  readonly name = "device_lists";

  /** Over the device-list service. */
  constructor(private readonly service: Pick<DeviceListService, "changesBetween">) {}

  async fill(request: SyncStreamRequest, response: SyncResponse): Promise<void> {
    if (request.since === undefined) return;
    const { changed, left } = await this.service.changesBetween(
      request.userId,
      request.since,
      request.upTo,
    );
    // Other streams (signature notices) add to `changed` as well: keep each user once, and
    // never in both lists.
    const lists = response.device_lists;
    const listed = new Set(lists.changed);
    for (const userId of changed) {
      if (!listed.has(userId)) {
        lists.changed.push(userId);
        listed.add(userId);
      }
    }
    const leaving = new Set(lists.left);
    for (const userId of left) {
      if (!listed.has(userId) && !leaving.has(userId)) {
        lists.left.push(userId);
        leaving.add(userId);
      }
    }
  }
}
