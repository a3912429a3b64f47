import assert from "node:assert/strict";
import { LruCache } from "../../kv/lru_cache.ts";

Deno.test("LRU evicts the least recently used entry beyond its capacity", () => {
  const cache = new LruCache<string, number>({ capacity: 2 });
  cache.set("a", 1);
  cache.set("b", 2);
  assert.equal(cache.get("a"), 1);
  cache.set("c", 3);
  assert.equal(cache.get("b"), undefined);
  assert.equal(cache.get("a"), 1);
  assert.equal(cache.get("c"), 3);
});

Deno.test("LRU stays under its weight and skips values heavier than all of it", () => {
  const cache = new LruCache<string, string>({
    capacity: 100,
    maxWeight: 10,
    weigh: (v) => v.length,
  });
  cache.set("a", "xxxx");
  cache.set("b", "xxxx");
  cache.set("c", "xxxx");
  assert.equal(cache.get("a"), undefined);
  assert.equal(cache.size, 2);
  cache.set("huge", "x".repeat(11));
  assert.equal(cache.get("huge"), undefined);
  assert.equal(cache.get("c"), "xxxx");
});
