/**
 * The `to_device` section of `/sync`: the syncing device's inbox, oldest first, at most
 * `TO_DEVICE_SYNC_LIMIT` messages per response. Unlike the other streams it does not read a
 * window (since, upTo]: it reads from the head of the inbox, which holds exactly what the
 * device has not acknowledged yet, so a response cut short by the cap is non-empty (a
 * long-poll returns at once) and the rest follow in the next syncs.
 *
 * Acknowledgement (the spec's "deleted once the client syncs with the next_batch of the
 * response that carried them") is done by the store in the same commit that records the new
 * handing-out: see ToDeviceStore.takeForSync. A full sync (no `since`) also delivers.
 */
import type { ToDeviceStore } from "../ports/to_device_store.ts";
import type { SyncResponse } from "../sync/sync_response.ts";
import type { SyncStreamProvider, SyncStreamRequest } from "../sync/sync_stream.ts";

/** Most to-device messages in one sync response (Synapse's figure). */
export const TO_DEVICE_SYNC_LIMIT = 100;

/** Adds the device's pending to-device messages to a sync response. */
export class ToDeviceStream implements SyncStreamProvider {
  readonly name = "to_device";

  /** Over the store's inboxes; `limit` per response. */
  constructor(
    private readonly store: Pick<ToDeviceStore, "takeForSync">,
    private readonly limit = TO_DEVICE_SYNC_LIMIT,
  ) {}

  async fill(request: SyncStreamRequest, response: SyncResponse): Promise<void> {
    const events = await this.store.takeForSync({
      userId: request.userId,
      deviceId: request.deviceId,
      since: request.since,
      upTo: request.upTo,
      limit: this.limit,
    });
    // The spec's ToDevice event: type, sender, content (message_id is federation's only).
    for (const event of events) {
      response.to_device.events.push({
        type: event.type,
        sender: event.sender,
        content: event.content,
      });
    }
  }
}
