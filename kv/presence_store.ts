/** Presence in KV: one record per user and one server-wide change index. */
import type { PresenceRecord, PresenceStore } from "../domain/ports/presence_store.ts";
import { presenceChangePrefix, presenceKey } from "./schema.ts";
import { listChanges, writeVersioned } from "./versioned_records.ts";

/** The KV implementation of the presence port. */
export class KvPresenceStore implements PresenceStore {
  /** Store presence in `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  async get(userId: string): Promise<PresenceRecord | null> {
    return (await this.kv.get<PresenceRecord>(presenceKey(userId))).value;
  }

  async put(record: PresenceRecord): Promise<string> {
    const key = presenceKey(record.userId);
    const stamp = await writeVersioned<PresenceRecord>(this.kv, key, () => ({
      key,
      value: record,
      changePrefix: presenceChangePrefix(),
    }));
    return stamp!;
  }

  async changes(options: { since?: string; upTo: string }): Promise<PresenceRecord[]> {
    const changes = await listChanges<PresenceRecord>(
      this.kv,
      presenceChangePrefix(),
      options.since,
      options.upTo,
    );
    return changes.map((c) => c.value);
  }
}
