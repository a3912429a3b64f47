/**
 * `deno task bench:rate-limits`: what limits shared by the fleet (domain/shared_rate_counters.ts)
 * add to a request, against the per-process in-memory buckets alone (the limiter before issue
 * 12). Each run takes hits in a loop for a fixed time with the real clock and the real 100 ms
 * flush timer, as a server would; printed: microseconds per hit (median of five runs), the
 * added cost, reads per hit and commits per second, for one hot key and for many keys (each
 * needing its own read of the fleet's counters: the case of a key not decided on in the last
 * 100 ms, such as a user's occasional request), over `:memory:` KV and over a durable local KV
 * file (where each flush costs a disk sync). Every hit is allowed (rules far above the load),
 * so each one is counted and flushed.
 */
import { DEFAULT_RATE_LIMITS, RateLimiter } from "../domain/rate_limiter.ts";
import { SharedRateCounters } from "../domain/shared_rate_counters.ts";
import { KvRateLimitStore } from "../kv/rate_limit_store.ts";
import { summarise } from "./bench_stats.ts";

const RUNS = 5;
const RUN_MS = 1500;
const RULES = { ...DEFAULT_RATE_LIMITS, send: { burst: 1e9, perSecond: 1e9 } };

interface RunResult {
  microsPerHit: number;
  readsPerSecond: number;
  commitsPerSecond: number;
  setsPerCommit: number;
}

type Setup = "memory-buckets" | "shared-memory-kv" | "shared-kv-file";

async function run(setup: Setup, keys: number): Promise<RunResult> {
  let kv: Deno.Kv | undefined;
  let dir: string | undefined;
  let counters: SharedRateCounters | undefined;
  if (setup !== "memory-buckets") {
    if (setup === "shared-kv-file") dir = await Deno.makeTempDir({ prefix: "bench-rl-" });
    kv = await Deno.openKv(dir ? `${dir}/kv.sqlite` : ":memory:");
    counters = new SharedRateCounters(new KvRateLimitStore(kv));
  }
  const limiter = new RateLimiter(RULES, Date.now, counters);
  try {
    // Warm up the code paths (and the file's tables) before timing.
    for (let i = 0; i < 2000; i++) await limiter.take("send", `user:@w${i % keys}:bench`);
    await limiter.flush();
    const reads0 = counters?.stats.reads ?? 0;
    const flushes0 = counters?.stats.flushes ?? 0;
    const sets0 = counters?.stats.totalsWritten ?? 0;
    let hits = 0;
    const start = performance.now();
    const end = start + RUN_MS;
    while (performance.now() < end) {
      for (let i = 0; i < 1000; i++) {
        const result = await limiter.take("send", `user:@u${hits % keys}:bench`);
        if (!result.allowed) throw new Error("a hit was refused: the bench rules are too tight");
        hits++;
      }
      // A server's requests arrive as I/O, so timers (the flush) run between them; a loop of
      // resolved promises alone would starve them. The same yield is in the "before" figure.
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    const elapsed = performance.now() - start;
    const commits = (counters?.stats.flushes ?? 0) - flushes0;
    return {
      microsPerHit: (elapsed * 1000) / hits,
      readsPerSecond: ((counters?.stats.reads ?? 0) - reads0) / (elapsed / 1000),
      commitsPerSecond: commits / (elapsed / 1000),
      setsPerCommit: commits > 0 ? ((counters?.stats.totalsWritten ?? 0) - sets0) / commits : 0,
    };
  } finally {
    await limiter.flush();
    limiter.close();
    kv?.close();
    if (dir) await Deno.remove(dir, { recursive: true });
  }
}

async function medianOf(setup: Setup, keys: number) {
  const results: RunResult[] = [];
  for (let i = 0; i < RUNS; i++) results.push(await run(setup, keys));
  return {
    micros: summarise(results.map((r) => r.microsPerHit)),
    reads: summarise(results.map((r) => r.readsPerSecond)).median,
    commits: summarise(results.map((r) => r.commitsPerSecond)).median,
    sets: summarise(results.map((r) => r.setsPerCommit)).median,
  };
}

const fmt = (n: number, digits = 2) => n.toFixed(digits);

console.log(
  `rate limits: microseconds per hit, median of ${RUNS} runs of ${RUN_MS} ms ` +
    "(min-max); the flush interval and the read cache are 100 ms",
);
for (const keys of [1, 10_000]) {
  const base = await medianOf("memory-buckets", keys);
  console.log(`\n${keys === 1 ? "one hot key" : `${keys.toLocaleString("en-US")} keys`}:`);
  console.log(
    `  in-memory buckets only (before): ${fmt(base.micros.median)} µs ` +
      `(${fmt(base.micros.min)}-${fmt(base.micros.max)})`,
  );
  for (const setup of ["shared-memory-kv", "shared-kv-file"] as const) {
    const shared = await medianOf(setup, keys);
    const label = setup === "shared-memory-kv" ? "shared, :memory: KV" : "shared, KV file";
    console.log(
      `  ${label}: ${fmt(shared.micros.median)} µs ` +
        `(${fmt(shared.micros.min)}-${fmt(shared.micros.max)}), ` +
        `added ${fmt(shared.micros.median - base.micros.median)} µs per hit; ` +
        `${fmt(shared.reads, 0)} reads/s, ${fmt(shared.commits, 1)} flushes/s of ` +
        `${fmt(shared.sets, 0)} sets (a commit per 1,000)`,
    );
  }
}
