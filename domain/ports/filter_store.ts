/** The storage port for uploaded sync filters, kept per user under a server-chosen ID. */
import type { JsonObject } from "../json.ts";

/** Stored filters of each user. */
export interface FilterStore {
  /** Store `filter` for `userId` under `filterId` (the same filter always gets the same ID). */
  put(userId: string, filterId: string, filter: JsonObject): Promise<void>;
  /** A stored filter; null when the user has none with that ID. */
  get(userId: string, filterId: string): Promise<JsonObject | null>;
}
