/**
 * Rate-limit hits shared by every process over one database, without a commit per request.
 *
 * Each process counts the hits it allows per (action, key, window) in memory and writes its
 * totals in ONE commit of blind sets per interval (100 ms by default), and only while it has
 * hits to write: an idle process runs no timer. A decision reads the other writers' counters of
 * the last windows (one `list` of one key range), keeps that snapshot for about an interval, and
 * adds this process's own hits, which it always knows exactly. fleet_rate_windows.ts turns the
 * counts into the answer.
 *
 * Each writer replaces its own total rather than adding to a shared counter (KV `sum`): a sum
 * clears the key's expiry, so summed counters would never go away; a total is also safe to
 * write again after a failed commit, where a retried sum could count twice.
 *
 * What a process cannot see of the others' hits: at most one flush interval of them, plus a
 * commit's time, plus the age of its snapshot (at most `cacheMs`). So N processes allow at most
 * the fleet limit plus about (N - 1) x (their request rate on the key) x (interval + cacheMs +
 * a commit) - and never more than each process's own bucket allows in that time.
 *
 * Cost: per request no commit; at most one read per (action, key) per `cacheMs`; per process at
 * most 1000 / interval commits a second (10 at the default), each with one set per (action,
 * key, window) hit since the last.
 */
import type { RateCounterTotal, RateLimitStore } from "./ports/rate_limit_store.ts";
import {
  counterLifetimeMs,
  fleetDecision,
  type FleetWindowing,
  fleetWindowing,
  windowAt,
} from "./fleet_rate_windows.ts";
import type { RateLimitResult, RateLimitRule } from "./rate_limiter.ts";

/** Default flush interval, ms: the overshoot bound grows with it, the commit rate shrinks. */
export const DEFAULT_RATE_FLUSH_INTERVAL_MS = 100;

/** Keys kept before entries with nothing to flush and an old snapshot are swept. */
const MAX_ENTRIES = 100_000;

/** Reads of one key before deciding on the last one even if it is already old again. */
const MAX_LOADS = 2;

/** Runs `run` after `delayMs`; returns a function cancelling it. Injectable for tests. */
export type Schedule = (run: () => void, delayMs: number) => () => void;

/** Construction options of SharedRateCounters. */
export interface SharedRateCountersOptions {
  /** How long hits wait before their flush, ms (default 100). */
  flushIntervalMs?: number;
  /** How long a read of the fleet's counters is used, ms (default: the flush interval). */
  cacheMs?: number;
  /** The clock of windows and snapshots (tests inject one). */
  now?: () => number;
  /** Timer of the flushes (default: an unreferenced setTimeout). */
  schedule?: Schedule;
  /** A flush that failed (written again at the next); default: console.warn. */
  onFlushError?: (error: unknown) => void;
}

/** What this process has read and written, for benches and tests. */
export interface SharedRateStats {
  reads: number;
  flushes: number;
  totalsWritten: number;
}

/** The other writers' counts of (action, key) as read: `others[i]` for window `window - i`. */
interface Snapshot {
  readAt: number;
  window: number;
  others: number[];
}

interface Entry {
  id: string;
  action: string;
  key: string;
  windowing: FleetWindowing;
  /** This process's counters of the key (a new entry writes new ones, never older totals). */
  writer: string;
  /** Hits allowed here per window, for the windows a decision still reads. */
  mine: Map<number, number>;
  /** Windows whose total changed since it was last written. */
  unwritten: Set<number>;
  snapshot?: Snapshot;
  loading?: Promise<void>;
}

const defaultSchedule: Schedule = (run, delayMs) => {
  const id = setTimeout(run, delayMs);
  // A script that is done must not wait for a flush; a server is kept alive by its listener.
  Deno.unrefTimer(id);
  return () => clearTimeout(id);
};

/** Per-process hit counts written to the fleet's counters, and decisions over both. */
export class SharedRateCounters {
  readonly #store: RateLimitStore;
  readonly #flushIntervalMs: number;
  readonly #cacheMs: number;
  readonly #now: () => number;
  readonly #schedule: Schedule;
  readonly #onFlushError: (error: unknown) => void;
  readonly #process = randomId();
  #serial = 0;
  readonly #entries = new Map<string, Entry>();
  readonly #dirty = new Set<Entry>();
  #flushing: Promise<void> | undefined;
  #cancelTimer: (() => void) | undefined;
  #closed = false;
  /** Reads, flushes (commit batches) and totals written so far. */
  readonly stats: SharedRateStats = { reads: 0, flushes: 0, totalsWritten: 0 };

  /** Counters in `store`; see SharedRateCountersOptions for the rest. */
  constructor(store: RateLimitStore, options: SharedRateCountersOptions = {}) {
    this.#store = store;
    this.#flushIntervalMs = options.flushIntervalMs ?? DEFAULT_RATE_FLUSH_INTERVAL_MS;
    this.#cacheMs = options.cacheMs ?? this.#flushIntervalMs;
    this.#now = options.now ?? Date.now;
    this.#schedule = options.schedule ?? defaultSchedule;
    this.#onFlushError = options.onFlushError ??
      ((error) => console.warn("rate limits: hits not written yet", error));
  }

  /**
   * Decide one hit of `action` by `key` under `rule` across the fleet. When the fleet has room,
   * `admit` (this process's own check, e.g. its token bucket) runs in the same synchronous step
   * and has the last word; only an admitted hit is counted. Reads KV only when the snapshot of
   * the key is older than `cacheMs`.
   */
  async take(
    action: string,
    key: string,
    rule: Readonly<RateLimitRule>,
    admit: () => RateLimitResult,
  ): Promise<RateLimitResult> {
    for (let attempt = 0;; attempt++) {
      const entry = this.#entry(action, key, rule);
      if (this.#fresh(entry) || attempt >= MAX_LOADS) return this.#decide(entry, rule, admit);
      entry.loading ??= this.#read(entry).finally(() => entry.loading = undefined);
      await entry.loading;
    }
  }

  /** Write the totals changed here now (one commit); waits for a flush under way first. */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    if (this.#dirty.size === 0 || this.#closed) return;
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    this.#flushing = this.#flushOnce().finally(() => this.#flushing = undefined);
    await this.#flushing;
  }

  /** Stop flushing (after a last `flush()` on a clean shutdown); unwritten hits are dropped. */
  close(): void {
    this.#closed = true;
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    this.#dirty.clear();
  }

  #entry(action: string, key: string, rule: Readonly<RateLimitRule>): Entry {
    const id = `${action}\u0000${key}`;
    let entry = this.#entries.get(id);
    if (entry === undefined) {
      if (this.#entries.size >= MAX_ENTRIES) this.#sweep();
      entry = {
        id,
        action,
        key,
        windowing: fleetWindowing(rule),
        writer: `${this.#process}.${(this.#serial++).toString(36)}`,
        mine: new Map(),
        unwritten: new Set(),
      };
      this.#entries.set(id, entry);
    }
    return entry;
  }

  #fresh(entry: Entry): boolean {
    if (entry.snapshot === undefined) return false;
    const age = this.#now() - entry.snapshot.readAt;
    return age >= 0 && age < this.#cacheMs;
  }

  async #read(entry: Entry): Promise<void> {
    const { action, key, windowing } = entry;
    const readAt = this.#now();
    const window = windowAt(windowing, readAt);
    this.stats.reads++;
    const others = await this.#store.readOthers(
      { action, key, windowMs: windowing.windowMs },
      window - windowing.windows + 1,
      window,
      entry.writer,
    );
    entry.snapshot = { readAt, window, others };
  }

  #decide(
    entry: Entry,
    rule: Readonly<RateLimitRule>,
    admit: () => RateLimitResult,
  ): RateLimitResult {
    const { windowing } = entry;
    const now = this.#now();
    const window = windowAt(windowing, now);
    const oldest = window - windowing.windows + 1;
    for (const w of entry.mine.keys()) {
      if (w >= oldest) continue;
      entry.mine.delete(w);
      entry.unwritten.delete(w);
    }
    const snapshot = entry.snapshot;
    const counts: number[] = [];
    for (let i = 0; i < windowing.windows; i++) {
      const w = window - i;
      const back = snapshot === undefined ? -1 : snapshot.window - w;
      const others = snapshot !== undefined && back >= 0 ? snapshot.others[back] ?? 0 : 0;
      counts.push(others + (entry.mine.get(w) ?? 0));
    }
    const fleet = fleetDecision(rule, windowing, counts, now - window * windowing.windowMs);
    if (!fleet.allowed) return fleet;
    const own = admit();
    if (!own.allowed) return own;
    entry.mine.set(window, (entry.mine.get(window) ?? 0) + 1);
    entry.unwritten.add(window);
    this.#dirty.add(entry);
    this.#scheduleFlush();
    return own;
  }

  #scheduleFlush(): void {
    // A flush under way sets the timer for what it leaves (see #flushOnce).
    if (this.#flushing === undefined) this.#setFlushTimer();
  }

  #setFlushTimer(): void {
    if (this.#cancelTimer !== undefined || this.#closed) return;
    this.#cancelTimer = this.#schedule(() => {
      this.#cancelTimer = undefined;
      this.flush().catch(this.#onFlushError);
    }, this.#flushIntervalMs);
  }

  async #flushOnce(): Promise<void> {
    const batch = [...this.#dirty];
    this.#dirty.clear();
    const totals: RateCounterTotal[] = [];
    const written = new Map<Entry, number[]>();
    for (const entry of batch) {
      const { action, key, windowing, writer } = entry;
      const expireInMs = counterLifetimeMs(windowing);
      const windows = [...entry.unwritten];
      entry.unwritten.clear();
      written.set(entry, windows);
      for (const window of windows) {
        const total = entry.mine.get(window) ?? 0;
        totals.push({
          action,
          key,
          windowMs: windowing.windowMs,
          window,
          writer,
          total,
          expireInMs,
        });
      }
    }
    this.stats.flushes++;
    this.stats.totalsWritten += totals.length;
    try {
      await this.#store.writeTotals(totals);
    } catch (error) {
      // Totals are absolute: writing them again at the next flush counts nothing twice.
      for (const [entry, windows] of written) {
        for (const window of windows) if (entry.mine.has(window)) entry.unwritten.add(window);
        if (entry.unwritten.size > 0) this.#dirty.add(entry);
      }
      this.#onFlushError(error);
    } finally {
      // Hits taken meanwhile, or totals to write again: the next interval's flush.
      if (this.#dirty.size > 0) this.#setFlushTimer();
    }
  }

  /**
   * Drop entries nothing reads any more: nothing unwritten, no hit in the windows a decision
   * reads, snapshot too old. Under a flood of distinct keys, also the oldest half of the rest
   * with nothing unwritten (their totals stay in KV; a new entry writes as a new writer).
   */
  #sweep(): void {
    const now = this.#now();
    for (const [id, entry] of this.#entries) {
      if (entry.unwritten.size > 0 || entry.loading !== undefined || this.#fresh(entry)) continue;
      const oldest = windowAt(entry.windowing, now) - entry.windowing.windows + 1;
      if ([...entry.mine.keys()].every((w) => w < oldest)) this.#entries.delete(id);
    }
    if (this.#entries.size >= MAX_ENTRIES) {
      let drop = this.#entries.size / 2;
      for (const [id, entry] of this.#entries) {
        if (drop <= 0) break;
        if (entry.unwritten.size > 0 || entry.loading !== undefined) continue;
        this.#entries.delete(id);
        drop--;
      }
    }
  }
}

/** 64 random bits, hex: this process's part of its writer names. */
function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
