/**
 * Sync filters in KV (`userid_filter`), as UTF-8 JSON bytes: the service caps a filter at
 * 60,000 bytes, and bytes (unlike a structured-clone string) stay that size in the value.
 */
import type { JsonObject } from "../domain/json.ts";
import type { FilterStore } from "../domain/ports/filter_store.ts";
import { filterKey } from "./schema.ts";

/** The KV implementation of the FilterStore port. */
export class KvFilterStore implements FilterStore {
  /** Over an open KV database. */
  constructor(private readonly kv: Deno.Kv) {}

  /** See FilterStore.put. */
  async put(userId: string, filterId: string, filter: JsonObject): Promise<void> {
    await this.kv.set(
      filterKey(userId, filterId),
      new TextEncoder().encode(JSON.stringify(filter)),
    );
  }

  /** See FilterStore.get. */
  async get(userId: string, filterId: string): Promise<JsonObject | null> {
    const bytes = (await this.kv.get<Uint8Array>(filterKey(userId, filterId))).value;
    return bytes ? JSON.parse(new TextDecoder().decode(bytes)) as JsonObject : null;
  }
}
