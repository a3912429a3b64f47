/**
 * Reading the state usage projection (roomid_stateusage, written by kv/projections.ts) for the
 * state caps: three small entries in one getMany, whatever the size of the room.
 */
import type { StateUsage, StateUsageReader } from "../domain/ports/state_usage_reader.ts";
import { EventStoreKeys } from "./schema.ts";

/** The state caps' reader over live event store keys. */
export class KvStateUsageReader implements StateUsageReader {
  /** Over `kv`, with the event store's keys (a replay namespace in tests, if any). */
  constructor(private readonly kv: Deno.Kv, private readonly keys = new EventStoreKeys()) {}

  /** Usage of the room, of the user in it, and the entry at (type, stateKey). */
  async stateUsage(
    roomId: string,
    userId: string,
    type: string,
    stateKey: string,
  ): Promise<StateUsage> {
    const [room, user, entry] = await this.kv.getMany<[number, number, StateUsage["entry"]]>([
      this.keys.stateUsageRoom(roomId),
      this.keys.stateUsageUser(roomId, userId),
      this.keys.stateUsageEntry(roomId, type, stateKey),
    ]);
    return { roomBytes: room.value ?? 0, userBytes: user.value ?? 0, entry: entry.value };
  }
}
