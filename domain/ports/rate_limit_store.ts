/**
 * Storage port for rate-limit counters shared by every process over one database: one counter
 * per (action, key, window length, window number), only ever added to (KV `sum`), so concurrent
 * flushes from many processes never conflict, and each counter expires once no decision can
 * read it any more.
 */

/** One counter: hits of `action` by `key` in window number `window` of `windowMs` each. */
export interface RateCounterId {
  action: string;
  key: string;
  windowMs: number;
  window: number;
}

/** An addition to one counter, with how long the counter must be kept after it. */
export interface RateCounterIncrement extends RateCounterId {
  count: number;
  expireInMs: number;
}

/** Where the fleet's rate-limit counters live. */
export interface RateLimitStore {
  /** The counts of `counters`, in order; 0 for a counter never written (or expired). */
  read(counters: readonly RateCounterId[]): Promise<number[]>;
  /**
   * Add every increment: one commit of blind sums (more only past KV's commit limits).
   * Rejects when a commit fails; a failed commit added nothing.
   */
  add(increments: readonly RateCounterIncrement[]): Promise<void>;
}
