/**
 * Sliding-sync connections in KV: per (user, device, conn_id) a head record (JSON bytes, split
 * into chunks when the subscription configs make it larger than one value) and one record per
 * room (`slidingconn_room`), so a connection over thousands of rooms never needs a big value
 * and an answer rewrites only the rooms it sent. Every record expires a month after the last
 * request that wrote it: an abandoned conn_id or a deleted device leaves nothing for long.
 */
import { tooLarge } from "../domain/errors.ts";
import type { ConnectionHead, RoomEntry } from "../domain/sliding_sync/connection.ts";
import type {
  ConnectionKey,
  LoadedHead,
  SlidingConnectionStore,
} from "../domain/ports/sliding_sync_connection_store.ts";
import { decodeJson, encodeJson, joinChunks, splitChunks } from "./chunked_value.ts";
import { commitOrConflict } from "./commit_retry.ts";
import { getManyChunked } from "./get_many.ts";
import { slidingConnectionKeys as keys } from "./schema.ts";

/** How long records outlive the last request that wrote them. */
export const CONNECTION_TTL_MS = 30 * 24 * 3600 * 1000;
/** Most chunks a head may take (8 x 60,000 bytes): bounds the subscriptions a connection holds. */
export const MAX_HEAD_CHUNKS = 8;
/**
 * A commit's share of room records: KV takes 1,000 mutations and 80 KiB of keys per commit,
 * and user, device, conn and room IDs can make a key several hundred bytes long.
 */
const ROOMS_PER_COMMIT = 800;
const ROOM_KEY_BYTES_PER_COMMIT = 60_000;

interface StoredHead {
  chunks: number;
  first: Uint8Array;
}

/** The KV implementation of the SlidingConnectionStore port. */
export class KvSlidingConnectionStore implements SlidingConnectionStore {
  /** Over an open KV database. */
  constructor(private readonly kv: Deno.Kv) {}

  /** See SlidingConnectionStore.loadHead. */
  async loadHead({ userId, deviceId, connId }: ConnectionKey): Promise<LoadedHead | undefined> {
    const entry = await this.kv.get<StoredHead>(keys.head(userId, deviceId, connId));
    if (entry.value === null || entry.versionstamp === null) return undefined;
    const chunks = [entry.value.first];
    if (entry.value.chunks > 1) {
      const rest = await getManyChunked<Uint8Array>(
        this.kv,
        Array.from(
          { length: entry.value.chunks - 1 },
          (_, i) => keys.headChunk(userId, deviceId, connId, i + 1),
        ),
      );
      // A continuation missing means it expired apart from its head: treat as no connection.
      if (rest.some((r) => r.value === null)) return undefined;
      chunks.push(...rest.map((r) => r.value as Uint8Array));
    }
    return { head: decodeJson<ConnectionHead>(joinChunks(chunks)), version: entry.versionstamp };
  }

  /** See SlidingConnectionStore.roomEntries. */
  async roomEntries(
    { userId, deviceId, connId }: ConnectionKey,
    roomIds: readonly string[],
  ): Promise<Map<string, RoomEntry>> {
    const entries = await getManyChunked<RoomEntry>(
      this.kv,
      roomIds.map((roomId) => keys.room(userId, deviceId, connId, roomId)),
    );
    const out = new Map<string, RoomEntry>();
    entries.forEach((entry, i) => {
      if (entry.value !== null) out.set(roomIds[i], entry.value);
    });
    return out;
  }

  /** See SlidingConnectionStore.save. */
  async save(
    key: ConnectionKey,
    head: ConnectionHead,
    expected: string | undefined,
    rooms: ReadonlyMap<string, RoomEntry>,
  ): Promise<boolean> {
    const { userId, deviceId, connId } = key;
    const chunks = splitChunks(encodeJson(head));
    if (chunks.length > MAX_HEAD_CHUNKS) {
      throw tooLarge("The connection's room subscriptions are too large");
    }
    const options = { expireIn: CONNECTION_TTL_MS };
    const headKey = keys.head(userId, deviceId, connId);
    const op = this.kv.atomic();
    if (expected !== undefined) op.check({ key: headKey, versionstamp: expected });
    op.set(headKey, { chunks: chunks.length, first: chunks[0] } satisfies StoredHead, options);
    for (let i = 1; i < MAX_HEAD_CHUNKS; i++) {
      const chunkKey = keys.headChunk(userId, deviceId, connId, i);
      if (i < chunks.length) op.set(chunkKey, chunks[i], options);
      else op.delete(chunkKey);
    }
    const [first, ...later] = batches(
      [...rooms],
      (roomId) => keys.room(userId, deviceId, connId, roomId),
    );
    for (const [roomKey, entry] of first ?? []) op.set(roomKey, entry, options);
    const result = await commitOrConflict(op);
    if (!result.ok) return false;
    for (const batch of later) {
      const write = this.kv.atomic();
      for (const [roomKey, entry] of batch) write.set(roomKey, entry, options);
      await write.commit();
    }
    return true;
  }
}

/** Room records cut into commits that fit KV's mutation and key-size budgets. */
function batches(
  rooms: readonly [string, RoomEntry][],
  keyOf: (roomId: string) => Deno.KvKey,
): [Deno.KvKey, RoomEntry][][] {
  const out: [Deno.KvKey, RoomEntry][][] = [];
  let current: [Deno.KvKey, RoomEntry][] = [];
  let bytes = 0;
  for (const [roomId, entry] of rooms) {
    const key = keyOf(roomId);
    const size = key.reduce<number>((n, part) => n + String(part).length * 3 + 4, 0);
    if (
      current.length >= ROOMS_PER_COMMIT ||
      (current.length > 0 && bytes + size > ROOM_KEY_BYTES_PER_COMMIT)
    ) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push([key, entry]);
    bytes += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}
