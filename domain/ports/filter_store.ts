/** The storage port for uploaded sync filters, kept per user under a server-chosen ID. */
import type { JsonObject } from "../protocol/json.ts";

/** Stored filters of each user. */
export interface FilterStore {
  /**
   * Store `filter` for `userId` under `filterId` (the same filter always gets the same ID),
   * unless it is new and the user holds `maxFilters` already: then store nothing and answer
   * false. The count moves in the same commit as the filter.
   */
  put(userId: string, filterId: string, filter: JsonObject, maxFilters: number): Promise<boolean>;
  /** A stored filter; null when the user has none with that ID. */
  get(userId: string, filterId: string): Promise<JsonObject | null>;
}
