import { assertEquals } from "../assert.ts";
import { KeyedDrainQueue } from "../../domain/keyed_drain_queue.ts";

Deno.test("items queue per key, batch while a drain runs, and keys drain independently", async () => {
  const batches: string[][] = [];
  const queue = new KeyedDrainQueue<string, string>(async (key, waiting) => {
    const batch = waiting.splice(0);
    batches.push([key, ...batch.map((q) => q.item)]);
    await new Promise((r) => setTimeout(r, 5));
    for (const q of batch) q.resolve(`${key}:${q.item}`);
  });
  const results = await Promise.all([
    queue.enqueue("a", "1"),
    queue.enqueue("a", "2"),
    queue.enqueue("b", "x"),
    queue.enqueue("a", "3"),
  ]);
  assertEquals(results, ["a:1", "a:2", "b:x", "a:3"]);
  // The first item starts a drain alone; the ones queued meanwhile share the next batch.
  assertEquals(batches, [["a", "1"], ["b", "x"], ["a", "2", "3"]]);
});

Deno.test("a failing drain step rejects everything still queued for that key only", async () => {
  const queue = new KeyedDrainQueue<number, number>(async (key, waiting) => {
    await Promise.resolve();
    if (key === "bad") throw new Error("boom");
    for (const q of waiting.splice(0)) q.resolve(q.item * 2);
  });
  const outcomes = await Promise.allSettled([
    queue.enqueue("bad", 1),
    queue.enqueue("bad", 2),
    queue.enqueue("good", 3),
  ]);
  assertEquals(outcomes.map((o) => o.status), ["rejected", "rejected", "fulfilled"]);
  assertEquals((outcomes[2] as PromiseFulfilledResult<number>).value, 6);
  // The key's queue is gone after the failure: a new item starts a fresh drain.
  assertEquals(
    await Promise.allSettled([queue.enqueue("good", 4)]).then((r) => r[0].status),
    "fulfilled",
  );
});
