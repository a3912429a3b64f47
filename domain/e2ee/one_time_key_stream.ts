/**
 * The sync stream of a device's key counts: `device_one_time_keys_count` and
 * `device_unused_fallback_key_types`, read afresh on every sync (full or incremental), since
 * clients top their keys up from these. They are a snapshot, not news: a long-poll does not end
 * for them (`isEmptySyncResponse` ignores them).
 */
import type { SyncStreamProvider, SyncStreamRequest } from "../sync/sync_stream.ts";
import type { SyncResponse } from "../sync/sync_response.ts";
import type { DeviceKeyService } from "./device_key_service.ts";

/** Fills the syncing device's one-time key counts and unused fallback key types. */
export class OneTimeKeyStream implements SyncStreamProvider {
  readonly name = "one_time_keys";

  /** Read the counts through `keys`. */
  constructor(
    private readonly keys: Pick<DeviceKeyService, "oneTimeKeyCounts" | "unusedFallbackKeyTypes">,
  ) {}

  async fill(request: SyncStreamRequest, response: SyncResponse): Promise<void> {
    const [counts, fallbackTypes] = await Promise.all([
      this.keys.oneTimeKeyCounts(request.userId, request.deviceId),
      this.keys.unusedFallbackKeyTypes(request.userId, request.deviceId),
    ]);
    response.device_one_time_keys_count = counts;
    response.device_unused_fallback_key_types = fallbackTypes;
  }
}
