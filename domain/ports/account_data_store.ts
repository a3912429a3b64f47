/**
 * The storage port for account data: per user, global and per-room JSON objects by type.
 * Changes are ordered by the commit versionstamp; `since`/`upTo` are sync tokens.
 */
import type { JsonObject } from "../protocol/json.ts";
import type { AccountDataUsage } from "../account_data/account_data_quota.ts";

/** One account data entry; `roomId` is null for global account data. */
export interface AccountDataEntry {
  roomId: string | null;
  type: string;
  content: JsonObject;
}

/** Account data storage. */
export interface AccountDataStore {
  /** One entry's content; null when unset. */
  get(userId: string, roomId: string | null, type: string): Promise<JsonObject | null>;
  /**
   * Set one entry and move the user's usage (see account_data_quota.ts) in the same commit;
   * returns the commit's versionstamp. `check` sees the usage before and after and may throw to
   * refuse the write (then nothing is written).
   */
  put(
    userId: string,
    roomId: string | null,
    type: string,
    content: JsonObject,
    check?: (before: AccountDataUsage, after: AccountDataUsage) => void,
  ): Promise<string>;
  /**
   * Entries written after `since` (every entry when absent) and not after `upTo`, each once
   * with its latest content.
   */
  changes(userId: string, options: { since?: string; upTo: string }): Promise<AccountDataEntry[]>;
}
