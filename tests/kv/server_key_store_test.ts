/** The remote key cache in KV: later fetches win, forgotten keys stay, failures are counted. */
import assert from "node:assert/strict";
import type { StoredServerKey } from "../../domain/ports/server_key_store.ts";
import { KvServerKeyStore } from "../../kv/server_key_store.ts";

function stored(keyId: string, fetchedTs: number, fill = 1): StoredServerKey {
  return {
    serverName: "b.test",
    keyId,
    publicKey: new Uint8Array(32).fill(fill),
    validUntilTs: fetchedTs + 1000,
    fetchedTs,
    document: { server_name: "b.test", fetched: fetchedTs },
  };
}

Deno.test("server key store: a later fetch replaces, an earlier one never does", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvServerKeyStore(kv);
    await store.putKeys([stored("ed25519:a", 200, 2)]);
    await store.putKeys([stored("ed25519:a", 100, 1)]);
    assert.equal((await store.getKey("b.test", "ed25519:a"))?.fetchedTs, 200);
    await store.putKeys([stored("ed25519:a", 300, 3), stored("ed25519:b", 300, 3)]);
    assert.equal((await store.getKey("b.test", "ed25519:a"))?.publicKey[0], 3);
    // A document naming only key c leaves a and b alone.
    await store.putKeys([stored("ed25519:c", 400)]);
    const keys = await store.listKeys("b.test");
    assert.deepEqual(keys.map((k) => k.keyId), ["ed25519:a", "ed25519:b", "ed25519:c"]);
    assert.equal(await store.getKey("c.test", "ed25519:a"), undefined);
    // Many keys at once span several commits.
    await store.putKeys(Array.from({ length: 25 }, (_, i) => stored(`ed25519:k${i}`, 500)));
    assert.equal((await store.listKeys("b.test")).length, 28);
  } finally {
    kv.close();
  }
});

Deno.test("server key store: failures count up until a success clears them", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvServerKeyStore(kv);
    const backoff = (failures: number) => failures * 10;
    assert.deepEqual(await store.recordFetchFailure("b.test", 1000, backoff), {
      failures: 1,
      retryAtTs: 1010,
    });
    assert.deepEqual(await store.recordFetchFailure("b.test", 2000, backoff), {
      failures: 2,
      retryAtTs: 2020,
    });
    assert.deepEqual(await store.getFetchFailure("b.test"), { failures: 2, retryAtTs: 2020 });
    await store.putKeys([stored("ed25519:a", 3000)]);
    assert.equal(await store.getFetchFailure("b.test"), undefined);
  } finally {
    kv.close();
  }
});
