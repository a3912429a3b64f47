/**
 * Sync filters in KV (`userid_filter`), as UTF-8 JSON bytes: the service caps a filter at
 * 60,000 bytes, and bytes (unlike a structured-clone string) stay that size in the value.
 */
import type { JsonObject } from "../domain/protocol/json.ts";
import type { FilterStore } from "../domain/ports/filter_store.ts";
import { contentionError } from "./commit_retry.ts";
import { filterCountKey, filterKey } from "./schema.ts";

/** The KV implementation of the FilterStore port. */
export class KvFilterStore implements FilterStore {
  /** Over an open KV database. */
  constructor(private readonly kv: Deno.Kv) {}

  /** See FilterStore.put: an ID already stored holds the same filter, so it is left alone. */
  async put(
    userId: string,
    filterId: string,
    filter: JsonObject,
    maxFilters: number,
  ): Promise<boolean> {
    const key = filterKey(userId, filterId);
    const countKey = filterCountKey(userId);
    for (let attempt = 0; attempt < 64; attempt++) {
      const [stored, count] = await this.kv.getMany<[Uint8Array, number]>([key, countKey]);
      if (stored.value !== null) return true;
      const held = count.value ?? 0;
      if (held >= maxFilters) return false;
      const result = await this.kv.atomic().check(stored, count)
        .set(key, new TextEncoder().encode(JSON.stringify(filter)))
        .set(countKey, held + 1)
        .commit();
      if (result.ok) return true;
    }
    throw contentionError(`storing filter ${filterId}`);
  }

  /** See FilterStore.get. */
  async get(userId: string, filterId: string): Promise<JsonObject | null> {
    const bytes = (await this.kv.get<Uint8Array>(filterKey(userId, filterId))).value;
    return bytes ? JSON.parse(new TextDecoder().decode(bytes)) as JsonObject : null;
  }
}
