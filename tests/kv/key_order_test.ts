import assert from "node:assert/strict";
import { compareKeys } from "../../kv/key_order.ts";

// Backfill positions are negative numbers in log keys: this pins down that KV sorts them
// numerically, and that our comparator (used by replay's merge-join) agrees with KV.
Deno.test("KV orders negative numbers and bigints numerically; compareKeys agrees", async () => {
  const kv = await Deno.openKv(":memory:");
  const keys: Deno.KvKey[] = [
    ["p", -1e15],
    ["p", -2],
    ["p", -1],
    ["p", 0],
    ["p", 1],
    ["p", 2 ** 40],
    ["p", -(10n ** 20n)],
    ["p", -1n],
    ["p", 7n],
    ["p", "a"],
    ["p", "é"],
    ["p", "\uffff"],
    ["p", "😀"],
    ["p", new Uint8Array([1, 2])],
    ["p", false],
    ["p", true],
    ["p", "a", 1],
  ];
  for (const key of [...keys].reverse()) await kv.set(key, 0);
  const listed: Deno.KvKey[] = [];
  for await (const entry of kv.list({ prefix: ["p"] })) listed.push(entry.key);
  const numbers = listed.filter((k) => typeof k[1] === "number").map((k) => k[1]);
  assert.deepEqual(numbers, [-1e15, -2, -1, 0, 1, 2 ** 40]);
  const sorted = [...keys].sort(compareKeys);
  assert.deepEqual(sorted, listed);
  kv.close();
});
