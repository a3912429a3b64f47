import assert from "node:assert/strict";
import {
  commitWithDeviceListChanges,
  deviceListChangesBetween,
  deviceListStreamId,
  deviceListUpdatesAfter,
} from "../../kv/device_list_log.ts";
import { e2eeKeys } from "../../kv/schema.ts";
import { syncToken } from "../../kv/stream_tokens.ts";

Deno.test("concurrent updates of one user over two connections chain 1..n without gaps", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/device_lists.kv`;
  const first = await Deno.openKv(path);
  const second = await Deno.openKv(path);
  try {
    const user = "@racer:test";
    const n = 24;
    // Each writer reads the head, yields, then commits: the head check makes the losers retry.
    const results = await Promise.all(
      Array.from(
        { length: n },
        (_, i) =>
          commitWithDeviceListChanges(i % 2 === 0 ? first : second, async (_op, changes) => {
            await new Promise((resolve) => setTimeout(resolve, 0));
            changes.add(user, { deviceIds: [`D${i}`] });
            return i;
          }),
      ),
    );
    const updates = await deviceListUpdatesAfter(first, user);
    assert.deepEqual(updates.map((u) => u.streamId), Array.from({ length: n }, (_, i) => i + 1));
    updates.forEach((u, i) => assert.deepEqual(u.prevIds, i === 0 ? [] : [i]));
    assert.deepEqual(
      updates.map((u) => u.deviceIds[0]).sort(),
      Array.from({ length: n }, (_, i) => `D${i}`).sort(),
    );
    assert.equal(await deviceListStreamId(second, user), n);
    // Each commit returned the update it wrote, and its index entry carries its versionstamp.
    const byStream = new Map(results.map((r) => [r!.updates[0].streamId, r!]));
    assert.equal(byStream.size, n);
    let entries = 0;
    for await (const e of first.list({ prefix: e2eeKeys.deviceListChangePrefix() })) {
      entries++;
      assert.ok(results.some((r) => r!.versionstamp === e.key[1]));
    }
    assert.equal(entries, n);
    const stamps = results.map((r) => r!.versionstamp).sort();
    const changed = await deviceListChangesBetween(
      first,
      syncToken(stamps[n - 2]),
      syncToken(stamps[n - 1]),
    );
    assert.deepEqual([...changed], [user]);
    // Only updates after a position are read back.
    assert.deepEqual((await deviceListUpdatesAfter(second, user, n - 2)).map((u) => u.streamId), [
      n - 1,
      n,
    ]);
  } finally {
    first.close();
    second.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a build returning null commits nothing", async () => {
  const kv = await Deno.openKv(":memory:");
  const result = await commitWithDeviceListChanges(kv, (_op, changes) => {
    changes.add("@u:test", { deviceIds: ["D"] });
    return Promise.resolve(null);
  });
  assert.equal(result, null);
  assert.equal(await deviceListStreamId(kv, "@u:test"), 0);
  kv.close();
});
