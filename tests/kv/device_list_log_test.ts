import assert from "node:assert/strict";
import {
  commitWithDeviceListChanges,
  deviceListChangesBetween,
  deviceListChangesWithin,
  deviceListStreamId,
  deviceListUpdatesAfter,
  usersWithDeviceListChanges,
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

Deno.test("a window's changes are listed up to a limit, else read from the named users' logs", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const change = async (...userIds: string[]) => {
      const committed = await commitWithDeviceListChanges(kv, (_op, changes) => {
        for (const userId of userIds) changes.add(userId, { deviceIds: ["D"] });
        return Promise.resolve(true);
      });
      return syncToken(committed!.versionstamp);
    };
    const start = await change("@before:test");
    await change("@a:test");
    await change("@b:test", "@c:test");
    const mid = await change("@d:test");
    await change("@a:test");
    const end = await change("@e:test");
    await change("@a:test", "@f:test");
    // (start, mid] holds three commits: listed whole with a limit of 3, refused with 2.
    assert.deepEqual(
      [...(await deviceListChangesWithin(kv, start, mid, 3))!].sort(),
      ["@a:test", "@b:test", "@c:test", "@d:test"],
    );
    assert.equal(await deviceListChangesWithin(kv, start, mid, 2), null);
    assert.deepEqual([...(await deviceListChangesWithin(kv, mid, end, 2))!].sort(), [
      "@a:test",
      "@e:test",
    ]);
    // The per-user answer agrees: a's head is after `mid` but a changed inside (start, mid];
    // f changed only after `end`; nobody is not in the log at all.
    const named = ["@a:test", "@b:test", "@d:test", "@f:test", "@before:test", "@nobody:test"];
    assert.deepEqual([...await usersWithDeviceListChanges(kv, named, start, mid)].sort(), [
      "@a:test",
      "@b:test",
      "@d:test",
    ]);
    assert.deepEqual([...await usersWithDeviceListChanges(kv, named, mid, end)].sort(), [
      "@a:test",
    ]);
    assert.deepEqual([...await usersWithDeviceListChanges(kv, named, end, end)], []);
  } finally {
    kv.close();
  }
});
