import { assertEquals } from "../assert.ts";
import { KvUrlPreviewCache, PREVIEW_CACHE_MS } from "../../kv/url_preview_cache.ts";

Deno.test("preview cache keeps one preview per URL and hour, and ignores expired ones", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const clock = { now: 1_000_000 };
    const cache = new KvUrlPreviewCache(kv, () => clock.now);
    assertEquals(await cache.get("abc", 7), null);
    await cache.put("abc", 7, { "og:title": "seven" });
    await cache.put("abc", 8, { "og:title": "eight" });
    await cache.put("def", 7, { "og:title": "other" });
    assertEquals(await cache.get("abc", 7), { "og:title": "seven" });
    assertEquals(await cache.get("abc", 8), { "og:title": "eight" });
    assertEquals(await cache.get("def", 7), { "og:title": "other" });
    // KV drops expired keys lazily; the entry's own deadline decides.
    clock.now += PREVIEW_CACHE_MS;
    assertEquals(await cache.get("abc", 7), null);
  } finally {
    kv.close();
  }
});
