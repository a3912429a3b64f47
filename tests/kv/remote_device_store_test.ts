/**
 * The remote device-list cache in KV: a list larger than one value spans chunks and reads back
 * whole; a smaller rewrite leaves no chunk behind; a logged write lands in the device-list
 * change index and the user's log (so sync sees the remote user), an unlogged one does not;
 * concurrent writers of one user serialise; drop removes everything.
 */
import assert from "node:assert/strict";
import { KvRemoteDeviceStore } from "../../kv/remote_device_store.ts";
import { deviceListChangesBetween, deviceListStreamId } from "../../kv/device_list_log.ts";
import { e2eeKeys } from "../../kv/schema.ts";
import { syncToken } from "../../kv/stream_tokens.ts";
import type { RemoteDeviceList } from "../../domain/ports/remote_device_store.ts";

const ALICE = "@alice:a.test";

function list(streamId: number, devices: number, nameBytes = 10): RemoteDeviceList {
  return {
    userId: ALICE,
    streamId,
    resyncedAt: streamId,
    known: [streamId],
    devices: Object.fromEntries(
      Array.from({ length: devices }, (_, i) => [`D${i}`, { displayName: "n".repeat(nameBytes) }]),
    ),
  };
}

async function chunkKeys(kv: Deno.Kv): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix: e2eeKeys.remoteDeviceListChunkPrefix(ALICE) })) n++;
  return n;
}

Deno.test("remote device store: large lists span chunks, rewrites leave none behind, logged writes reach the change index", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvRemoteDeviceStore(kv);
    const big = list(1, 300, 600); // ~200 KB
    const log = { deviceIds: ["D0"], deleted: [], crossSigning: false };
    const first = await store.modify(ALICE, () => ({ result: 1, write: { next: big, log } }));
    assert.equal(first.result, 1);
    assert.ok(first.versionstamp !== null);
    assert.ok(await chunkKeys(kv) >= 3);
    assert.deepEqual((await store.get([ALICE, "@nobody:a.test"])).get(ALICE), big);
    assert.ok(
      (await deviceListChangesBetween(kv, undefined, syncToken(first.versionstamp!))).has(ALICE),
    );
    assert.equal(await deviceListStreamId(kv, ALICE), 1, "the user's log has the change");

    // A small rewrite, not logged: the old chunks go, the log does not move.
    const small = list(2, 2);
    const second = await store.modify(ALICE, (current) => {
      assert.deepEqual(current, big);
      return { result: null, write: { next: small, log: null } };
    });
    assert.ok(second.versionstamp !== null);
    assert.equal(await chunkKeys(kv), 0);
    assert.deepEqual((await store.get([ALICE])).get(ALICE), small);
    assert.equal(await deviceListStreamId(kv, ALICE), 1);

    // No write: nothing committed.
    const none = await store.modify(ALICE, () => ({ result: "kept" }));
    assert.deepEqual(none, { result: "kept", versionstamp: null });

    // Concurrent writers of one user serialise: each sees the other's write.
    await Promise.all(Array.from({ length: 5 }, () =>
      store.modify(ALICE, (current) => ({
        result: null,
        write: { next: { ...current!, streamId: current!.streamId + 1 }, log },
      }))));
    assert.equal((await store.get([ALICE])).get(ALICE)!.streamId, 7);

    await store.modify(ALICE, () => ({ result: null, write: { next: big, log: null } }));
    await store.drop([ALICE]);
    assert.equal((await store.get([ALICE])).size, 0);
    assert.equal(await chunkKeys(kv), 0);
  } finally {
    kv.close();
  }
});
