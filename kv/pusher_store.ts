/**
 * Pushers in KV: one record per user (`userid_pushers`, UTF-8 JSON of the list), written with a
 * versionstamp check, and an index of who holds each (app_id, pushkey) pair, kept in the same
 * commit, so `POST /pushers/set` without `append` can find the pair's other holders.
 */
import { tooLarge } from "../domain/errors.ts";
import type { PusherStore, StoredPushers } from "../domain/ports/pusher_store.ts";
import type { Pusher } from "../domain/push/pushers.ts";
import { decodeJson, encodeJson } from "./chunked_value.ts";
import { getManyChunked } from "./get_many.ts";
import { pushKeys } from "./schema.ts";

/** Largest record: one KV value (64 KiB) less a margin. */
const MAX_RECORD_BYTES = 60_000;

/** The KV adapter of the pusher store. */
export class KvPusherStore implements PusherStore {
  /** A store over an open KV database. */
  constructor(private readonly kv: Deno.Kv) {}

  async get(userId: string): Promise<StoredPushers> {
    const entry = await this.kv.get<Uint8Array>(pushKeys.pushers(userId));
    return {
      pushers: entry.value === null ? [] : decodeJson<Pusher[]>(entry.value),
      versionstamp: entry.versionstamp,
    };
  }

  async getMany(userIds: readonly string[]): Promise<Map<string, Pusher[]>> {
    const entries = await getManyChunked<Uint8Array>(this.kv, userIds.map(pushKeys.pushers));
    return new Map(
      entries.map((e, i) => [userIds[i], e.value === null ? [] : decodeJson<Pusher[]>(e.value)]),
    );
  }

  async put(userId: string, pushers: readonly Pusher[], expected: StoredPushers): Promise<boolean> {
    const bytes = encodeJson(pushers);
    if (bytes.byteLength > MAX_RECORD_BYTES) throw tooLarge("Too many pushers; delete some first");
    const key = pushKeys.pushers(userId);
    const op = this.kv.atomic().check({ key, versionstamp: expected.versionstamp });
    if (pushers.length === 0) op.delete(key);
    else op.set(key, bytes);
    for (const old of expected.pushers) {
      if (!pushers.some((p) => p.app_id === old.app_id && p.pushkey === old.pushkey)) {
        op.delete(pushKeys.pushkeyHolder(old.app_id, old.pushkey, userId));
      }
    }
    for (const p of pushers) op.set(pushKeys.pushkeyHolder(p.app_id, p.pushkey, userId), p.id);
    return (await op.commit()).ok;
  }

  async holders(appId: string, pushkey: string): Promise<string[]> {
    const out: string[] = [];
    const prefix = pushKeys.pushkeyHolderPrefix(appId, pushkey);
    for await (const entry of this.kv.list({ prefix })) {
      out.push(entry.key[entry.key.length - 1] as string);
    }
    return out;
  }
}
