/** Account data in KV: one UTF-8 JSON record per (user, room, type) and a per-user change index. */
import type { JsonObject } from "../domain/json.ts";
import type { AccountDataEntry, AccountDataStore } from "../domain/ports/account_data_store.ts";
import { decodeJson, encodeJson } from "./chunked_value.ts";
import { accountDataChangePrefix, accountDataKey } from "./schema.ts";
import { listChanges, writeVersioned } from "./versioned_records.ts";

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

  async put(
    userId: string,
    roomId: string | null,
    type: string,
    content: JsonObject,
  ): Promise<string> {
    const key = accountDataKey(userId, roomId, type);
    const bytes = encodeJson(content);
    const stamp = await writeVersioned<Uint8Array>(this.kv, key, () => ({
      key,
      value: bytes,
      changePrefix: accountDataChangePrefix(userId),
      changeValue: { roomId, type, content: bytes } satisfies ChangeValue,
    }));
    return stamp!;
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
