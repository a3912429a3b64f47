/** Where `.well-known/matrix/server` answers are kept between requests and processes. */
import type { JsonValue } from "../protocol/json.ts";

/** A cached answer: the document (null when there was none usable) and its expiry. */
export interface CachedWellKnown {
  readonly document: JsonValue | null;
  /** ms since the epoch. */
  readonly expiresAt: number;
  /**
   * When the last valid answer (this one, or the one kept through a failure) expired or
   * expires; absent when none was ever valid.
   */
  readonly validUntil?: number;
}

/** The cache; entries past `expiresAt` are treated as absent by the caller. */
export interface WellKnownCache {
  get(hostname: string): Promise<CachedWellKnown | undefined>;
  put(hostname: string, entry: CachedWellKnown): Promise<void>;
}
