import { assert, assertEquals } from "../assert.ts";
import { KvRateLimitStore } from "../../kv/rate_limit_store.ts";
import type { RateCounterTotal } from "../../domain/ports/rate_limit_store.ts";

const series = { action: "send", key: "user:@a:example.org", windowMs: 2500 };

function total(window: number, writer: string, n: number, key = series.key): RateCounterTotal {
  return { ...series, key, window, writer, total: n, expireInMs: 60_000 };
}

Deno.test("rate limit store: totals per writer, summed over the others, by window", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvRateLimitStore(kv);
    await store.writeTotals([total(100, "p1", 3), total(101, "p1", 2), total(101, "p2", 4)]);
    await store.writeTotals([total(99, "p2", 9), total(102, "p3", 1)]);
    // Windows 98..101, newest first; p1's own counts left out.
    assertEquals(await store.readOthers(series, 98, 101, "p1"), [4, 0, 9, 0]);
    assertEquals(await store.readOthers(series, 98, 101, "p9"), [6, 3, 9, 0]);
    // A writer replaces its total: written again after a lost answer, it counts once.
    await store.writeTotals([total(101, "p2", 4), total(101, "p2b", 1)]);
    assertEquals(await store.readOthers(series, 101, 101, "p1"), [5]);
    // Other keys, actions and window lengths are apart.
    assertEquals(await store.readOthers({ ...series, action: "join" }, 98, 102, "x"), [
      0,
      0,
      0,
      0,
      0,
    ]);
    assertEquals(await store.readOthers({ ...series, windowMs: 5000 }, 98, 102, "x"), [
      0,
      0,
      0,
      0,
      0,
    ]);
  } finally {
    kv.close();
  }
});

Deno.test("rate limit store: a flush is one commit, split only past KV's limits; long keys hashed", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvRateLimitStore(kv);
    // 2,500 counters of 300-character keys: more than one commit may hold (1,000 mutations, 80 KiB of keys).
    const long = (i: number) => `threepid:email:${"x".repeat(280)}${i}@example.org`;
    const totals = Array.from({ length: 2500 }, (_, i) => total(7, "p1", i + 1, long(i)));
    await store.writeTotals(totals);
    for (const i of [0, 1234, 2499]) {
      assertEquals(await store.readOthers({ ...series, key: long(i) }, 7, 7, "p2"), [i + 1]);
    }
    // Every stored key is within KV's key size: the long ones are stored by their hash.
    let stored = 0;
    const commits = new Set<string>();
    for await (const entry of kv.list({ prefix: ["ratelimit_count"] })) {
      stored++;
      commits.add(entry.versionstamp);
      assert(String(entry.key[2]).startsWith("sha256:"));
    }
    assertEquals(stored, 2500);
    assert(commits.size > 1);
    // A flush of ordinary size is one commit: its entries share one versionstamp.
    await store.writeTotals(
      Array.from({ length: 50 }, (_, i) => total(8, "p1", 1, `user:@u${i}:x`)),
    );
    const small = new Set<string>();
    for await (const entry of kv.list({ prefix: ["ratelimit_count", "send"] })) {
      if (entry.key[4] === 8) small.add(entry.versionstamp);
    }
    assertEquals(small.size, 1);
  } finally {
    kv.close();
  }
});

Deno.test("rate limit store: a closed database takes the last flush quietly", async () => {
  const kv = await Deno.openKv(":memory:");
  const store = new KvRateLimitStore(kv);
  kv.close();
  await store.writeTotals([total(1, "p1", 1)]);
});
