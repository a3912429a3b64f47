/**
 * Typing in KV: one small record per room; its versionstamp tells sync whether it changed. Beside
 * it, while anyone types in the room, the earliest expiry in it (`typingExpiryKey`, same commit),
 * so the fleet's expiry job finds rooms due without reading every room's record.
 */
import { contentionError } from "./commit_retry.ts";
import type { TypingRecord, TypingStore } from "../domain/ports/typing_store.ts";
import { getManyChunked } from "./get_many.ts";
import { typingExpiryKey, typingExpiryPrefix, typingKey } from "./schema.ts";
import { parseSyncToken } from "./stream_tokens.ts";
import { addWakes } from "./wake_keys.ts";

/** The KV implementation of the typing port. */
export class KvTypingStore implements TypingStore {
  /** Store typing state in `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  async update(
    roomId: string,
    change: (users: Record<string, number>) => Record<string, number> | null,
  ): Promise<string | null> {
    const key = typingKey(roomId);
    for (let attempt = 0; attempt < 64; attempt++) {
      const entry = await this.kv.get<Record<string, number>>(key);
      const next = change({ ...entry.value });
      if (next === null) return null;
      // The room's syncs in other processes wake with this commit.
      const op = this.kv.atomic().check(entry).set(key, next);
      const expiries = Object.values(next);
      if (expiries.length > 0) op.set(typingExpiryKey(roomId), Math.min(...expiries));
      else op.delete(typingExpiryKey(roomId));
      const result = await addWakes(op, { roomIds: [roomId] }).commit();
      if (result.ok) return result.versionstamp;
    }
    throw contentionError(`writing typing in ${roomId}`);
  }

  async changes(
    roomIds: readonly string[],
    options: { since?: string; upTo: string },
  ): Promise<TypingRecord[]> {
    const since = options.since === undefined ? undefined : parseSyncToken(options.since);
    const upTo = parseSyncToken(options.upTo);
    const entries = await getManyChunked<Record<string, number>>(this.kv, roomIds.map(typingKey));
    const out: TypingRecord[] = [];
    entries.forEach((entry, i) => {
      const stamp = entry.versionstamp;
      if (stamp === null || stamp > upTo) return;
      if (since === undefined ? Object.keys(entry.value!).length === 0 : stamp <= since) return;
      out.push({ roomId: roomIds[i], users: entry.value!, versionstamp: stamp });
    });
    return out;
  }

  async roomsDue(now: number, limit: number): Promise<string[]> {
    const out: string[] = [];
    for await (const entry of this.kv.list<number>({ prefix: typingExpiryPrefix() })) {
      if (entry.value > now) continue;
      out.push(entry.key[entry.key.length - 1] as string);
      if (out.length >= limit) break;
    }
    return out;
  }
}
