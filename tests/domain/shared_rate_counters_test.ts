import { assert, assertEquals } from "../assert.ts";
import { counterLifetimeMs, fleetWindowing } from "../../domain/fleet_rate_windows.ts";
import { DEFAULT_RATE_LIMITS, RateLimiter } from "../../domain/rate_limiter.ts";
import {
  type Schedule,
  SharedRateCounters,
  type SharedRateCountersOptions,
} from "../../domain/shared_rate_counters.ts";
import type { RateCounterTotal, RateLimitStore } from "../../domain/ports/rate_limit_store.ts";
import { KvRateLimitStore } from "../../kv/rate_limit_store.ts";

/** Flush timers the test fires itself: no sleeping, and it sees whether one was set. */
class ManualTimers {
  pending: (() => void)[] = [];
  scheduled = 0;
  readonly schedule: Schedule = (run) => {
    this.scheduled++;
    this.pending.push(run);
    return () => this.pending = this.pending.filter((r) => r !== run);
  };
}

/** The real KV store, recording what it is asked to write (and failing the first n writes). */
class RecordingStore implements RateLimitStore {
  writes: RateCounterTotal[][] = [];
  failNext = 0;
  constructor(private readonly inner: RateLimitStore) {}
  readOthers(...args: Parameters<RateLimitStore["readOthers"]>) {
    return this.inner.readOthers(...args);
  }
  writeTotals(totals: readonly RateCounterTotal[]) {
    this.writes.push([...totals]);
    if (this.failNext > 0) {
      this.failNext--;
      return Promise.reject(new Error("commit failed (test)"));
    }
    return this.inner.writeTotals(totals);
  }
}

/** One process of the fleet: a limiter over the shared KV, on the test's clock and timers. */
function process(kv: Deno.Kv, clock: { now: number }, extra: SharedRateCountersOptions = {}) {
  const timers = new ManualTimers();
  const store = new RecordingStore(new KvRateLimitStore(kv));
  const counters = new SharedRateCounters(store, {
    now: () => clock.now,
    schedule: timers.schedule,
    ...extra,
  });
  const limiter = new RateLimiter(DEFAULT_RATE_LIMITS, () => clock.now, counters);
  return { limiter, counters, timers, store };
}

async function takeUntilRefused(limiter: RateLimiter, action: "login", key: string) {
  let allowed = 0;
  for (;;) {
    const result = await limiter.take(action, key);
    if (!result.allowed) return { allowed, refused: result };
    allowed++;
  }
}

// login: burst 10, 1 per second; windows of 2.5 s. 1,000,000 ms is a window boundary.
const START = 1_000_000;

Deno.test("shared rate limits: two processes on one KV reach the limit together", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const clock = { now: START };
    const a = process(kv, clock);
    const b = process(kv, clock);
    for (let i = 0; i < 6; i++) {
      assertEquals(await a.limiter.take("login", "addr:x"), { allowed: true });
    }
    await a.limiter.flush();
    // B has never seen the key: it reads A's six and allows the four left, as one process would.
    const onB = await takeUntilRefused(b.limiter, "login", "addr:x");
    assertEquals(onB.allowed, 4);
    assertEquals(onB.refused, { allowed: false, retryAfterMs: 1000 });
    await b.limiter.flush();
    // A's read is kept for the flush interval; after it, A sees B's four too.
    clock.now += 100;
    assertEquals((await a.limiter.take("login", "addr:x")).allowed, false);
    // Other keys and actions are counted apart.
    assertEquals(await b.limiter.take("login", "addr:y"), { allowed: true });
    assertEquals(await b.limiter.take("send", "addr:x"), { allowed: true });
    // A second later the rate gives the fleet one more hit, not one per process.
    clock.now += 1000;
    assertEquals(await a.limiter.take("login", "addr:x"), { allowed: true });
    await a.limiter.flush();
    clock.now += 100;
    assertEquals((await b.limiter.take("login", "addr:x")).allowed, false);
  } finally {
    kv.close();
  }
});

Deno.test("shared rate limits: without the fleet's counters each process allowed the whole limit", async () => {
  const clock = { now: START };
  const a = new RateLimiter(DEFAULT_RATE_LIMITS, () => clock.now);
  const b = new RateLimiter(DEFAULT_RATE_LIMITS, () => clock.now);
  const total = (await takeUntilRefused(a, "login", "addr:x")).allowed +
    (await takeUntilRefused(b, "login", "addr:x")).allowed;
  // The bug this part fixes: N processes, N times the limit.
  assertEquals(total, 20);
  const kv = await Deno.openKv(":memory:");
  try {
    const c = process(kv, clock);
    const d = process(kv, clock);
    // Alternating between the two, flushing after each: as with a load balancer and time.
    let allowed = 0;
    for (let i = 0; i < 30; i++) {
      const p = i % 2 === 0 ? c : d;
      if ((await p.limiter.take("login", "addr:x")).allowed) allowed++;
      await p.limiter.flush();
      clock.now += 100;
    }
    // What one bucket allows over 2.9 s: 10 at once, then one at 1.0 s and one at 2.0 s.
    assertEquals(allowed, 12);
  } finally {
    kv.close();
  }
});

Deno.test("shared rate limits: hits wait for ONE batched commit per interval, and no timer when idle", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const clock = { now: START };
    const a = process(kv, clock);
    assertEquals(a.timers.scheduled, 0);
    for (let i = 0; i < 50; i++) await a.limiter.take("send", `user:@u${i}:example.org`);
    for (let i = 0; i < 5; i++) await a.limiter.take("send", "user:@u0:example.org");
    // One timer for all of them, and no commit yet.
    assertEquals(a.timers.scheduled, 1);
    assertEquals(a.store.writes.length, 0);
    a.timers.pending.shift()!();
    await a.limiter.flush();
    assertEquals(a.store.writes.length, 1);
    assertEquals(a.store.writes[0].length, 50);
    const u0 = a.store.writes[0].find((t) => t.key === "user:@u0:example.org")!;
    assertEquals(u0.total, 6);
    // Each counter expires once no decision reads it.
    const lifetime = counterLifetimeMs(fleetWindowing(DEFAULT_RATE_LIMITS.send));
    assert(a.store.writes[0].every((t) => t.expireInMs === lifetime));
    assertEquals(lifetime, 21 * 1250);
    // Nothing new: no timer, no commit.
    await a.limiter.flush();
    assertEquals(a.timers.scheduled, 1);
    assertEquals(a.store.writes.length, 1);
    // A new hit sets the timer again and writes the key's new total (not an increment).
    await a.limiter.take("send", "user:@u0:example.org");
    assertEquals(a.timers.scheduled, 2);
    await a.limiter.flush();
    assertEquals(a.store.writes[1].map((t) => [t.key, t.total]), [["user:@u0:example.org", 7]]);
  } finally {
    kv.close();
  }
});

Deno.test("shared rate limits: concurrent hits on a new key share one read and never overrun", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const clock = { now: START };
    const a = process(kv, clock);
    const b = process(kv, clock);
    for (let i = 0; i < 3; i++) await b.limiter.take("login", "addr:x");
    await b.limiter.flush();
    const results = await Promise.all(
      Array.from({ length: 20 }, () => a.limiter.take("login", "addr:x")),
    );
    assertEquals(results.filter((r) => r.allowed).length, 7);
    assertEquals(a.counters.stats.reads, 1);
  } finally {
    kv.close();
  }
});

Deno.test("shared rate limits: reads are cached for the interval; a locally refused hit reads nothing", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const clock = { now: START };
    const a = process(kv, clock);
    for (let i = 0; i < 10; i++) await a.limiter.take("login", "addr:x");
    assertEquals(a.counters.stats.reads, 1);
    clock.now += 100;
    // The local bucket is empty: refused without asking the fleet.
    for (let i = 0; i < 20; i++) {
      assertEquals((await a.limiter.take("login", "addr:x")).allowed, false);
    }
    assertEquals(a.counters.stats.reads, 1);
    clock.now += 2000;
    assertEquals((await a.limiter.take("login", "addr:x")).allowed, true);
    assertEquals(a.counters.stats.reads, 2);
  } finally {
    kv.close();
  }
});

Deno.test("shared rate limits: a failed commit is written again at the next flush, never twice", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const clock = { now: START };
    const errors: unknown[] = [];
    const a = process(kv, clock, { onFlushError: (error) => errors.push(error) });
    const b = process(kv, clock);
    for (let i = 0; i < 5; i++) await a.limiter.take("login", "addr:x");
    a.store.failNext = 1;
    await a.limiter.flush();
    assertEquals(errors.length, 1);
    // The failed flush set the timer again for the same totals.
    assertEquals(a.timers.pending.length, 1);
    await a.limiter.flush();
    await a.limiter.flush();
    assertEquals(a.store.writes.map((w) => w.map((t) => t.total)), [[5], [5]]);
    assertEquals((await takeUntilRefused(b.limiter, "login", "addr:x")).allowed, 5);
  } finally {
    kv.close();
  }
});

Deno.test("shared rate limits: close stops the timer and drops unwritten hits", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const clock = { now: START };
    const a = process(kv, clock);
    await a.limiter.take("login", "addr:x");
    assertEquals(a.timers.pending.length, 1);
    a.limiter.close();
    assertEquals(a.timers.pending.length, 0);
    await a.limiter.flush();
    assertEquals(a.store.writes.length, 0);
  } finally {
    kv.close();
  }
});
