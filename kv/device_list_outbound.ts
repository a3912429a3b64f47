/**
 * What the outbound device-list sender (domain/federation/edus/device_list_sender.ts) stores: a
 * per-user mark of how far the device-list log was queued for other servers, read with the
 * updates after it, and moved in the commit that queues their EDUs (checked, so two processes
 * never queue one update twice in a row, nor skip one).
 */
import type {
  DeviceListOutbound,
  DeviceListSentMark,
  LoggedDeviceListUpdate,
  PendingDeviceListUpdates,
} from "../domain/federation/edus/device_list_sender.ts";
import type { CommitMutation } from "../domain/ports/event_store.ts";
import { applyMutations, type PlannedMutation } from "./commit_budget.ts";
import { commitOrConflict, contentionBackoff } from "./commit_retry.ts";
import type { DeviceListUpdate } from "./device_list_log.ts";
import { e2eeKeys } from "./schema.ts";

/** Attempts at a commit of outbox entries alone while the local database is busy. */
const BUSY_ATTEMPTS = 8;

/** The device-list sender's mark and log reads over Deno KV. */
export class KvDeviceListOutbound implements DeviceListOutbound {
  /** Over `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  async pending(userId: string, limit: number): Promise<PendingDeviceListUpdates> {
    const mark = await this.kv.get<DeviceListSentMark>(e2eeKeys.deviceListSent(userId));
    const prefix = e2eeKeys.deviceListUpdatePrefix(userId);
    const after = mark.value?.streamId ?? 0;
    const updates: LoggedDeviceListUpdate[] = [];
    // Newest first, so a long backlog costs `limit` reads; the sender sees the gap it leaves.
    const iter = this.kv.list<DeviceListUpdate>(
      { prefix, start: [...prefix, after + 1] },
      { reverse: true, limit, batchSize: Math.min(limit, 100) },
    );
    for await (const entry of iter) {
      const { streamId, prevIds, deviceIds, crossSigning } = entry.value;
      updates.push({ streamId, prevIds, deviceIds, crossSigning });
    }
    return { mark: mark.value, version: mark.versionstamp, updates: updates.reverse() };
  }

  async queue(
    userId: string,
    version: string | null,
    mark: DeviceListSentMark,
    parts: readonly CommitMutation[][],
  ): Promise<boolean> {
    for (const part of parts.slice(0, -1)) await this.#commitPart(part);
    const key = e2eeKeys.deviceListSent(userId);
    const op = applyMutations(this.kv.atomic(), (parts.at(-1) ?? []) as PlannedMutation[])
      .check({ key, versionstamp: version })
      .set(key, mark);
    return (await commitOrConflict(op)).ok;
  }

  async #commitPart(part: readonly CommitMutation[]): Promise<void> {
    for (let attempt = 0; attempt < BUSY_ATTEMPTS; attempt++) {
      if (attempt >= 1) await contentionBackoff(attempt + 1);
      const op = applyMutations(this.kv.atomic(), part as PlannedMutation[]);
      if ((await commitOrConflict(op)).ok) return;
    }
    throw new Error("the database stayed busy while queueing device-list EDUs");
  }
}
