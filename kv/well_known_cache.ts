/** `.well-known/matrix/server` answers in KV (`hostname_wellknown`), shared by all isolates. */
import type { CachedWellKnown, WellKnownCache } from "../domain/ports/well_known_cache.ts";
import { hostnameWellKnownKey } from "./schema.ts";

/** Bytes kept per document: discovery reads only `m.server`, and a KV value holds 64 KiB. */
const MAX_STORED_CHARS = 16 * 1024;

/** The KV-backed cache. */
export class KvWellKnownCache implements WellKnownCache {
  /** Over an open KV database. */
  constructor(private readonly kv: Deno.Kv) {}

  /** The cached entry, expired or not (the caller compares `expiresAt` with its clock). */
  async get(hostname: string): Promise<CachedWellKnown | undefined> {
    const entry = await this.kv.get<CachedWellKnown>(hostnameWellKnownKey(hostname));
    return entry.value ?? undefined;
  }

  /** Store an answer; a document too large to keep is stored as just its `m.server`. */
  async put(hostname: string, entry: CachedWellKnown): Promise<void> {
    let document = entry.document;
    if (document !== null && JSON.stringify(document).length > MAX_STORED_CHARS) {
      const server = typeof document === "object" && !Array.isArray(document)
        ? document["m.server"]
        : undefined;
      document = typeof server === "string" ? { "m.server": server } : null;
    }
    // One entry per server ever contacted, overwritten on refresh; the stored expiresAt is
    // what counts (no expireIn: tests run on their own clocks).
    await this.kv.set(hostnameWellKnownKey(hostname), { ...entry, document });
  }
}
