/** Profiles in KV: one UTF-8 JSON record per user under `userid_profile`. */
import { contentionError } from "./commit_retry.ts";
import type { ProfileFields, ProfileStore } from "../domain/ports/profile_store.ts";
import { decodeJson, encodeJson } from "./chunked_value.ts";
import { getManyChunked } from "./get_many.ts";
import { profileKey } from "./schema.ts";

/** The KV implementation of the profile port. */
export class KvProfileStore implements ProfileStore {
  /** Store profiles in `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  async get(userId: string): Promise<ProfileFields | null> {
    const entry = await this.kv.get<Uint8Array>(profileKey(userId));
    return entry.value ? decodeJson<ProfileFields>(entry.value) : null;
  }

  async getMany(userIds: readonly string[]): Promise<Map<string, ProfileFields>> {
    const entries = await getManyChunked<Uint8Array>(this.kv, userIds.map(profileKey));
    const out = new Map<string, ProfileFields>();
    entries.forEach((entry, i) => {
      if (entry.value) out.set(userIds[i], decodeJson<ProfileFields>(entry.value));
    });
    return out;
  }

  async update(
    userId: string,
    change: (current: ProfileFields | null) => ProfileFields,
  ): Promise<ProfileFields> {
    const key = profileKey(userId);
    for (let attempt = 0; attempt < 64; attempt++) {
      const entry = await this.kv.get<Uint8Array>(key);
      const next = change(entry.value ? decodeJson<ProfileFields>(entry.value) : null);
      const result = await this.kv.atomic().check(entry).set(key, encodeJson(next)).commit();
      if (result.ok) return next;
    }
    throw contentionError(`writing the profile of ${userId}`);
  }
}
