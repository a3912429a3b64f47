/**
 * Storage port for rate-limit counters shared by every process over one database. Each writer
 * (one per process and limited key) owns its own counter per (action, key, window) and only
 * ever replaces it with its new total in a blind write, so concurrent flushes from many
 * processes never conflict, a retried write never counts twice, and each counter can carry an
 * expiry (KV's `sum` cannot: it clears the expiry of the key it adds to, measured with Deno 2.9).
 */

/** Which counters: (action, key) counted in windows of `windowMs`. */
export interface RateCounterSeries {
  action: string;
  key: string;
  windowMs: number;
}

/** One writer's total in one window, and how long it must be kept after this write. */
export interface RateCounterTotal extends RateCounterSeries {
  window: number;
  writer: string;
  total: number;
  expireInMs: number;
}

/** Where the fleet's rate-limit counters live. */
export interface RateLimitStore {
  /**
   * The hits of every writer but `exceptWriter` in windows `fromWindow`..`toWindow` of
   * `series`: `counts[i]` for window `toWindow - i` (0 where nothing was written, or it expired).
   */
  readOthers(
    series: RateCounterSeries,
    fromWindow: number,
    toWindow: number,
    exceptWriter: string,
  ): Promise<number[]>;
  /** Write every total: one commit of blind sets (more only past KV's commit limits). */
  writeTotals(totals: readonly RateCounterTotal[]): Promise<void>;
}
