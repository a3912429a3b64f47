/**
 * The fleet-wide check behind every rate limit, as pure arithmetic over window counters.
 *
 * A token bucket (`burst` B, `perSecond` r) allows at most B + r*T requests in ANY interval of
 * length T. Processes cannot share a bucket without a read-modify-write commit per request,
 * but they can share counters that are only added to (KV `sum`): hits per window of `windowMs`
 * (d), the last `windows` (K) of them. A request at `e` ms into the current window is allowed
 * when, for every k = 1..K, the hits in the last k windows (the current one included) plus this
 * one fit B + r*((k-1)*d + e): those windows span an interval of exactly that length up to now.
 *
 * - It never refuses what one bucket allows (every checked interval is a real interval), so a
 *   client on one process sees exactly the bucket's answers.
 * - Across the fleet, any interval of length T <= (K-1)*d holds at most B + r*(T + d) hits (the
 *   interval lies in at most ceil(T/d)+1 windows, checked at the last hit); over longer spans
 *   the rate is at most r*K/(K-1) + B/((K-1)*d). With d = B/(4r) and K = 20: at most 1.25 B at
 *   once and about 1.26 r sustained, however many processes share the key (plus the hits not
 *   yet flushed, domain/shared_rate_counters.ts). Finer windows would tighten both; each
 *   costs one more counter per flush of a key's hits only when the hits span windows.
 */
import type { RateLimitResult, RateLimitRule } from "./rate_limiter.ts";

/** Windows read per decision (one `list` of one key range, whatever their number). */
export const FLEET_WINDOWS = 20;

/** Shortest window: counters for ever-shorter windows would all be written by every flush. */
const MIN_WINDOW_MS = 1000;

/** Float slack, so a hit the bucket allows on the exact boundary is allowed here too. */
const EPSILON = 1e-9;

/** How a rule's hits are counted across the fleet. */
export interface FleetWindowing {
  /** Window length d, ms. */
  windowMs: number;
  /** Windows checked, K. */
  windows: number;
}

/** A rule's windows: d is a quarter of the time an empty bucket takes to fill (at least 1 s). */
export function fleetWindowing(rule: Readonly<RateLimitRule>): FleetWindowing {
  const quarterRefillMs = Math.round((rule.burst / rule.perSecond) * 250);
  return { windowMs: Math.max(MIN_WINDOW_MS, quarterRefillMs), windows: FLEET_WINDOWS };
}

/** The window number holding time `now` (ms). */
export function windowAt(windowing: FleetWindowing, now: number): number {
  return Math.floor(now / windowing.windowMs);
}

/** How long after the last write a counter can still be read (KV `expireIn`), ms. */
export function counterLifetimeMs(windowing: FleetWindowing): number {
  return (windowing.windows + 1) * windowing.windowMs;
}

/**
 * Whether one more hit fits, given `counts[i]` = the fleet's hits in the window i windows
 * before the current one (i = 0..K-1; missing entries count 0) and `elapsedMs` into the current
 * window. Refused: the wait until it would fit if no other hit came.
 */
export function fleetDecision(
  rule: Readonly<RateLimitRule>,
  windowing: FleetWindowing,
  counts: readonly number[],
  elapsedMs: number,
): RateLimitResult {
  const wait = waitFor(rule, windowing, counts, elapsedMs);
  if (wait <= 0) return { allowed: true };
  // Walk forward window by window: older windows drop out as the current one ends.
  const { windowMs, windows } = windowing;
  let shifted = counts.slice(0, windows);
  let offset = 0;
  let elapsed = elapsedMs;
  for (let step = 0; step <= windows; step++) {
    const needed = waitFor(rule, windowing, shifted, elapsed);
    if (needed < windowMs - elapsed) {
      return { allowed: false, retryAfterMs: Math.max(1, Math.ceil(offset + Math.max(0, needed))) };
    }
    offset += windowMs - elapsed;
    elapsed = 0;
    shifted = [0, ...shifted.slice(0, windows - 1)];
  }
  return { allowed: false, retryAfterMs: Math.max(1, Math.ceil(offset)) };
}

/** The least wait (ms, may be <= 0) within the current window after which every k fits. */
function waitFor(
  rule: Readonly<RateLimitRule>,
  windowing: FleetWindowing,
  counts: readonly number[],
  elapsedMs: number,
): number {
  let hits = 0;
  let wait = -Infinity;
  for (let k = 1; k <= windowing.windows; k++) {
    hits += counts[k - 1] ?? 0;
    const spanMs = (k - 1) * windowing.windowMs + elapsedMs;
    // hits + 1 <= burst + perSecond * (spanMs + wait) / 1000
    const needed = ((hits + 1 - rule.burst - EPSILON) / rule.perSecond) * 1000 - spanMs;
    if (needed > wait) wait = needed;
  }
  return wait;
}
