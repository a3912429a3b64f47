/** Account data in KV: one UTF-8 JSON record per (user, room, type) and a per-user change index. */
import type { JsonObject } from "../domain/protocol/json.ts";
import {
  type AccountDataUsage,
  countsTowardAccountDataQuota,
  usageAfter,
} from "../domain/account_data/account_data_quota.ts";
import type { AccountDataEntry, AccountDataStore } from "../domain/ports/account_data_store.ts";
import { decodeJson, encodeJson } from "./chunked_value.ts";
import { contentionError } from "./commit_retry.ts";
import { accountDataChangePrefix, accountDataKey, accountDataUsageKey } from "./schema.ts";
import { listChanges } from "./versioned_records.ts";
import { addWakes } from "./wake_keys.ts";

/** An index entry: which record changed, with its content so sync needs no second read. */
interface ChangeValue {
  roomId: string | null;
  type: string;
  content: Uint8Array;
}

/** The KV implementation of the account data port. */
export class KvAccountDataStore implements AccountDataStore {
  /** Store account data in `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  async get(userId: string, roomId: string | null, type: string): Promise<JsonObject | null> {
    const entry = await this.kv.get<Uint8Array>(accountDataKey(userId, roomId, type));
    return entry.value ? decodeJson<JsonObject>(entry.value) : null;
  }

  /**
   * Replace the record, move its one change-index entry to this commit's versionstamp (as
   * versioned_records.ts does) and, for counted types, rewrite the usage record, all checked
   * against what was read: a concurrent write retries, so the caps hold exactly.
   */
  async put(
    userId: string,
    roomId: string | null,
    type: string,
    content: JsonObject,
    check?: (before: AccountDataUsage, after: AccountDataUsage) => void,
  ): Promise<string> {
    const key = accountDataKey(userId, roomId, type);
    const usageKey = accountDataUsageKey(userId);
    const changePrefix = accountDataChangePrefix(userId);
    const bytes = encodeJson(content);
    const counted = countsTowardAccountDataQuota(type);
    for (let attempt = 0; attempt < 64; attempt++) {
      const [current, usage] = counted
        ? await this.kv.getMany<[Uint8Array, AccountDataUsage]>([key, usageKey])
        : [await this.kv.get<Uint8Array>(key), null];
      const before = usage?.value ?? { types: 0, bytes: 0 };
      const after = usageAfter(before, {
        roomId,
        type,
        oldBytes: current.value?.byteLength ?? null,
        newBytes: bytes.byteLength,
      });
      check?.(before, after);
      const op = this.kv.atomic().check(current);
      if (usage) op.check(usage).set(usageKey, after);
      if (current.versionstamp !== null) op.delete([...changePrefix, current.versionstamp]);
      op.set(key, bytes);
      op.set(
        [...changePrefix, this.kv.commitVersionstamp()],
        {
          roomId,
          type,
          content: bytes,
        } satisfies ChangeValue,
      );
      // Global or per room, account data is the user's own stream: their syncs wake.
      addWakes(op, { userIds: [userId] });
      const result = await op.commit();
      if (result.ok) return result.versionstamp;
    }
    throw contentionError(`writing ${JSON.stringify(key)}`);
  }

  async changes(
    userId: string,
    options: { since?: string; upTo: string },
  ): Promise<AccountDataEntry[]> {
    const changes = await listChanges<ChangeValue>(
      this.kv,
      accountDataChangePrefix(userId),
      options.since,
      options.upTo,
    );
    return changes.map(({ value }) => ({
      roomId: value.roomId,
      type: value.type,
      content: decodeJson<JsonObject>(value.content),
    }));
  }
}
