import { assert, assertEquals } from "../assert.ts";
import {
  FLEET_WINDOWS,
  fleetDecision,
  type FleetWindowing,
  fleetWindowing,
  windowAt,
} from "../../domain/fleet_rate_windows.ts";
import {
  DEFAULT_RATE_LIMITS,
  type RateLimitRule,
  TokenBuckets,
} from "../../domain/rate_limiter.ts";

/** Hits at times (ms) as the window counts fleetDecision takes at `now`. */
function countsAt(windowing: FleetWindowing, hits: readonly number[], now: number): number[] {
  const window = windowAt(windowing, now);
  const counts = new Array<number>(windowing.windows).fill(0);
  for (const at of hits) {
    const back = window - windowAt(windowing, at);
    if (back >= 0 && back < windowing.windows) counts[back]++;
  }
  return counts;
}

function decide(rule: RateLimitRule, hits: readonly number[], now: number) {
  const windowing = fleetWindowing(rule);
  const elapsed = now - windowAt(windowing, now) * windowing.windowMs;
  return fleetDecision(rule, windowing, countsAt(windowing, hits, now), elapsed);
}

/** A deterministic pseudo-random sequence in [0, 1). */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const login = DEFAULT_RATE_LIMITS.login; // burst 10, 1/s: windows of 2.5 s

Deno.test("fleet windows: a quarter of the refill time per window, 20 windows, 1 s at least", () => {
  assertEquals(fleetWindowing(login), { windowMs: 2500, windows: FLEET_WINDOWS });
  assertEquals(FLEET_WINDOWS, 20);
  assertEquals(fleetWindowing(DEFAULT_RATE_LIMITS.send).windowMs, 1250);
  assertEquals(fleetWindowing({ burst: 1, perSecond: 10 }).windowMs, 1000);
});

Deno.test("fleet windows: a burst of `burst` at once, then the bucket's own retry time", () => {
  const start = 1_000_000; // a window boundary
  const hits: number[] = [];
  for (let i = 0; i < login.burst; i++) {
    assertEquals(decide(login, hits, start), { allowed: true });
    hits.push(start);
  }
  // The bucket would have a token again after 1 s; so does the fleet.
  assertEquals(decide(login, hits, start), { allowed: false, retryAfterMs: 1000 });
  assertEquals(decide(login, hits, start + 999).allowed, false);
  assertEquals(decide(login, hits, start + 1000), { allowed: true });
});

Deno.test("fleet windows: never refuses a hit one token bucket allows", () => {
  const rules: RateLimitRule[] = [
    login,
    DEFAULT_RATE_LIMITS.send,
    DEFAULT_RATE_LIMITS.register,
    { burst: 3, perSecond: 2 },
  ];
  for (const [index, rule] of rules.entries()) {
    const random = seeded(index + 7);
    const buckets = new TokenBuckets({ ...DEFAULT_RATE_LIMITS, login: rule }, () => now);
    let now = 123_456;
    const hits: number[] = [];
    let allowed = 0;
    for (let step = 0; step < 3000; step++) {
      // Bursts and pauses: sometimes many requests in one millisecond, sometimes seconds apart.
      now += random() < 0.3 ? 0 : Math.floor(random() * random() * 4000);
      if (!buckets.take("login", "k").allowed) continue;
      const fleet = decide(rule, hits, now);
      assert(fleet.allowed, `rule ${JSON.stringify(rule)} refused hit ${hits.length} at ${now}`);
      hits.push(now);
      allowed++;
    }
    assert(allowed > 100);
  }
});

Deno.test("fleet windows: the fleet's total stays within burst + rate x (span + a window)", () => {
  for (const rule of [login, DEFAULT_RATE_LIMITS.send, { burst: 5, perSecond: 0.5 }]) {
    const { windowMs, windows } = fleetWindowing(rule);
    // Any number of processes asking at every 10 ms, each decision seeing every earlier hit.
    const hits: number[] = [];
    const end = windowMs * windows * 4;
    for (let now = 0; now < end; now += 10) {
      while (decide(rule, hits, now).allowed) hits.push(now);
    }
    for (let i = 0; i < hits.length; i++) {
      for (let j = i; j < hits.length; j++) {
        const span = hits[j] - hits[i];
        if (span > (windows - 1) * windowMs) break;
        const bound = rule.burst + rule.perSecond * (span + windowMs) / 1000;
        assert(j - i + 1 <= bound + 1e-6, `${j - i + 1} hits in ${span} ms > ${bound}`);
      }
    }
    // Sustained: at most rate x K/(K-1) + burst / ((K-1) x window) per second, about 1.26 x.
    const longRun = rule.perSecond * windows / (windows - 1) +
      rule.burst / ((windows - 1) * windowMs / 1000);
    assert(hits.length <= rule.burst + longRun * end / 1000);
    // And far from the old N x limit: not even twice one bucket's allowance over the run.
    assert(hits.length < 2 * (rule.burst + rule.perSecond * end / 1000));
  }
});

Deno.test("fleet windows: retry_after_ms is the exact wait when no other hit comes", () => {
  const random = seeded(42);
  const rule = DEFAULT_RATE_LIMITS.send; // burst 100, 20/s
  for (let round = 0; round < 50; round++) {
    const hits: number[] = [];
    let now = 10_000_000 + Math.floor(random() * 10_000);
    // Fill up from several processes at once, at random moments.
    while (true) {
      const result = decide(rule, hits, now);
      if (!result.allowed) {
        assert(result.retryAfterMs >= 1);
        assert(!decide(rule, hits, now + result.retryAfterMs - 1).allowed);
        assert(decide(rule, hits, now + result.retryAfterMs).allowed);
        break;
      }
      hits.push(now);
      now += random() < 0.98 ? 0 : Math.floor(random() * 1000);
    }
  }
});
