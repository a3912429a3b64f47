/** Pending remote joins in KV (`userroomid_pendingjoin`): see domain/ports/pending_join_store.ts. */
import type { PendingJoinRecord, PendingJoinStore } from "../domain/ports/pending_join_store.ts";
import { pendingJoinKeys } from "./schema.ts";

/** The KV implementation of the PendingJoinStore port. */
export class KvPendingJoinStore implements PendingJoinStore {
  /** Over an open KV database. */
  constructor(private readonly kv: Deno.Kv) {}

  /** See PendingJoinStore.put. A join event is at most 64 KiB, within one value with the rest. */
  async put(record: PendingJoinRecord): Promise<void> {
    await this.kv.set(pendingJoinKeys.join(record.userId, record.roomId), record);
  }

  /** See PendingJoinStore.get. */
  async get(userId: string, roomId: string): Promise<PendingJoinRecord | null> {
    return (await this.kv.get<PendingJoinRecord>(pendingJoinKeys.join(userId, roomId))).value;
  }

  /** See PendingJoinStore.delete. */
  async delete(userId: string, roomId: string): Promise<void> {
    await this.kv.delete(pendingJoinKeys.join(userId, roomId));
  }

  /** See PendingJoinStore.list. */
  async list(): Promise<PendingJoinRecord[]> {
    const records: PendingJoinRecord[] = [];
    for await (const entry of this.kv.list<PendingJoinRecord>({ prefix: pendingJoinKeys.all() })) {
      records.push(entry.value);
    }
    return records;
  }
}
