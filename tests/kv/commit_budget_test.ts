import assert from "node:assert/strict";
import { serialize } from "node:v8";
import { CHUNK_BYTES, joinChunks, splitChunks } from "../../kv/chunked_value.ts";
import {
  commitOverLimit,
  estimateValueBytes,
  KV_LIMITS,
  measureCommit,
} from "../../kv/commit_budget.ts";
import { emptyRoomHead } from "../../kv/store_records.ts";

Deno.test("value estimates bound V8's serialised size of our records", () => {
  const chunk = splitChunks(new Uint8Array(150_000).fill(7))[0];
  const samples: unknown[] = [
    { event_id: "$é€😀".repeat(20), status: "soft_failed", seq: 2 ** 40, pdu: chunk, chunks: 3 },
    { ...emptyRoomHead("12"), extremities: ["$a", "$b".repeat(100)], state_group: 12345678 },
    { membership: "join", event_id: "$x" },
    { before: null, after: 3 },
    "$😀😀😀",
  ];
  for (const value of samples) {
    assert.ok(estimateValueBytes(value) >= serialize(value).byteLength, JSON.stringify(value));
  }
});

Deno.test("chunks are copies within the chunk size and join back", () => {
  const bytes = new Uint8Array(CHUNK_BYTES * 2 + 5).map((_, i) => i % 251);
  const chunks = splitChunks(bytes);
  assert.deepEqual(chunks.map((c) => c.byteLength), [CHUNK_BYTES, CHUNK_BYTES, 5]);
  assert.ok(chunks.every((c) => c.buffer.byteLength === c.byteLength));
  assert.deepEqual(joinChunks(chunks), bytes);
});

Deno.test("commit measure flags each of KV's limits", () => {
  const set = (i: number, size = 1) => ({
    op: "set" as const,
    key: ["k", i],
    value: new Uint8Array(size),
  });
  const check = (i: number) => ({ op: "check" as const, key: ["c", i], versionstamp: null });
  assert.equal(commitOverLimit(measureCommit([set(1), check(1)])), null);
  const many = Array.from({ length: KV_LIMITS.mutations + 1 }, (_, i) => set(i));
  assert.match(commitOverLimit(measureCommit(many)) ?? "", /mutations/);
  const checks = Array.from({ length: KV_LIMITS.checks + 1 }, (_, i) => check(i));
  assert.match(commitOverLimit(measureCommit(checks)) ?? "", /checks/);
  const big = Array.from({ length: 14 }, (_, i) => set(i, 60_000));
  assert.match(commitOverLimit(measureCommit(big)) ?? "", /bytes/);
  const longKeys = Array.from({ length: 60 }, (_, i) => ({
    op: "delete" as const,
    key: ["x".repeat(1500), i],
  }));
  assert.match(commitOverLimit(measureCommit(longKeys)) ?? "", /keys/);
});
