/**
 * The storage port for account data: per user, global and per-room JSON objects by type.
 * Changes are ordered by the commit versionstamp; `since`/`upTo` are sync tokens.
 */
import type { JsonObject } from "../json.ts";

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
  /** Set one entry; returns the commit's versionstamp. */
  put(userId: string, roomId: string | null, type: string, content: JsonObject): Promise<string>;
  /**
   * Entries written after `since` (every entry when absent) and not after `upTo`, each once
   * with its latest content.
   */
  changes(userId: string, options: { since?: string; upTo: string }): Promise<AccountDataEntry[]>;
}
