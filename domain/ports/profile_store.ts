/** The storage port for user profiles: one record of fields per user. */
import type { JsonValue } from "../protocol/json.ts";

/** A user's profile fields (`displayname`, `avatar_url`, `m.tz`, custom keys). */
export type ProfileFields = Record<string, JsonValue>;

/** Reads and read-modify-writes of profile records. */
export interface ProfileStore {
  /** The user's profile fields; null when the user has no profile record. */
  get(userId: string): Promise<ProfileFields | null>;
  /** Several users' profiles at once; users without a record are absent from the map. */
  getMany(userIds: readonly string[]): Promise<Map<string, ProfileFields>>;
  /**
   * Replace a profile with what `change` makes of the current one, atomically (retried when a
   * concurrent write lands first). `change` may throw to abort without writing.
   */
  update(
    userId: string,
    change: (current: ProfileFields | null) => ProfileFields,
  ): Promise<ProfileFields>;
}
