/**
 * The KV device key store: claims across two connections to one database file (as two processes
 * would have) hand out each one-time key exactly once; uploads and removals too big for one
 * commit are split and still complete; the reader returns what was uploaded.
 */
import { assert, assertEquals } from "../assert.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import type { ClaimedKey, UploadedKey } from "../../domain/ports/device_key_store.ts";
import { KvDeviceKeyStore } from "../../kv/device_key_store.ts";
import { deviceListUpdatesAfter } from "../../kv/device_list_log.ts";
import { newTestDevice, randomKey } from "../domain/e2ee/device_keys_fixture.ts";

const ALICE = "@alice:example.org";
const ALG = "signed_curve25519";

function uploaded(keys: Record<string, JsonObject | string>): UploadedKey[] {
  return Object.entries(keys).map(([name, key]) => {
    const colon = name.indexOf(":");
    return { algorithm: name.slice(0, colon), keyId: name.slice(colon + 1), key };
  });
}

Deno.test("20 claims racing over two KV connections hand out 10 keys once each, then the fallback", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/keys.sqlite3`;
  const first = await Deno.openKv(path);
  const second = await Deno.openKv(path);
  try {
    const device = await newTestDevice(ALICE, "DEV");
    const setup = new KvDeviceKeyStore(first);
    await setup.upload(ALICE, "DEV", {
      oneTimeKeys: uploaded(await device.oneTimeKeys(10)),
      fallbackKeys: uploaded(await device.fallbackKey("FALLBACK")),
    });
    // Two stores, two connections: each one's in-process batching cannot see the other's claims,
    // so only the KV check keeps them apart.
    const stores = [new KvDeviceKeyStore(first), new KvDeviceKeyStore(second)];
    const claims = Array.from(
      { length: 20 },
      (_, i) => stores[i % 2].claim(ALICE, "DEV", ALG),
    );
    const results = (await Promise.all(claims)).map((r) => r!);
    const oneTime = results.filter((r) => !r.fallback).map((r) => r.keyId).sort();
    assertEquals(oneTime, Array.from({ length: 10 }, (_, i) => `AAAA${i}`).sort());
    const fallbacks = results.filter((r) => r.fallback);
    assertEquals(fallbacks.length, 10);
    assert(fallbacks.every((r) => r.keyId === "FALLBACK"));
    assertEquals(await setup.oneTimeKeyCounts(ALICE, "DEV"), {});
    assertEquals(await setup.unusedFallbackKeyTypes(ALICE, "DEV"), []);
  } finally {
    first.close();
    second.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("many claims in one process are served by batched commits, each key once", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvDeviceKeyStore(kv);
    const keys: Record<string, string> = {};
    for (let i = 0; i < 150; i++) keys[`${ALG}:K${String(i).padStart(3, "0")}`] = randomKey();
    await store.upload(ALICE, "DEV", { oneTimeKeys: uploaded(keys), fallbackKeys: [] });
    const results = await Promise.all(
      Array.from({ length: 160 }, () => store.claim(ALICE, "DEV", ALG)),
    );
    const claimed = results.filter((r): r is ClaimedKey => r !== null).map((r) => r.keyId);
    assertEquals(claimed.length, 150);
    assertEquals(new Set(claimed).size, 150);
    // No fallback key: the last ten find nothing.
    assertEquals(results.filter((r) => r === null).length, 10);
  } finally {
    kv.close();
  }
});

Deno.test("concurrent identical uploads over two connections store each key once", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/keys.sqlite3`;
  const first = await Deno.openKv(path);
  const second = await Deno.openKv(path);
  try {
    const device = await newTestDevice(ALICE, "DEV");
    const keys = uploaded(await device.oneTimeKeys(20));
    const stores = [new KvDeviceKeyStore(first), new KvDeviceKeyStore(second)];
    const outcomes = await Promise.all(
      stores.map((s) => s.upload(ALICE, "DEV", { oneTimeKeys: keys, fallbackKeys: [] })),
    );
    assert(outcomes.every((o) => o.conflictingOneTimeKeys.length === 0));
    assertEquals(await stores[0].oneTimeKeyCounts(ALICE, "DEV"), { [ALG]: 20 });
    let queued = 0;
    for await (const _ of first.list({ prefix: ["userdevicealgseqkeyid_onetimekeyqueue"] })) {
      queued++;
    }
    assertEquals(queued, 20);
  } finally {
    first.close();
    second.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an upload too big for one commit lands whole, and removal deletes it all", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    // Long IDs make each key's two KV keys large, so 1,000 keys overflow one commit's 80 KiB.
    const userId = `@${"a".repeat(200)}:example.org`;
    const deviceId = "D".repeat(200);
    const device = await newTestDevice(userId, deviceId);
    const store = new KvDeviceKeyStore(kv);
    const keys: Record<string, string> = {};
    for (let i = 0; i < 1000; i++) keys[`${ALG}:${"k".repeat(50)}${i}`] = randomKey();
    const outcome = await store.upload(userId, deviceId, {
      deviceKeys: () => null,
      oneTimeKeys: uploaded(keys),
      fallbackKeys: uploaded(await device.fallbackKey("FB")),
    });
    assertEquals(outcome.conflictingOneTimeKeys, []);
    assertEquals(await store.oneTimeKeyCounts(userId, deviceId), { [ALG]: 1000 });
    // The same upload again is a no-op: every key is already there with the same content.
    await store.upload(userId, deviceId, { oneTimeKeys: uploaded(keys), fallbackKeys: [] });
    assertEquals(await store.oneTimeKeyCounts(userId, deviceId), { [ALG]: 1000 });

    const deviceKeys = await device.deviceKeys();
    await store.upload(userId, deviceId, {
      deviceKeys: () => deviceKeys,
      oneTimeKeys: [],
      fallbackKeys: [],
    });
    const versionstamp = await store.removeDevices(userId, [deviceId]);
    assert(versionstamp !== null);
    let left = 0;
    for await (const entry of kv.list({ prefix: [] })) {
      // The device-list log and the owner's wake key (bumped by the log) stay.
      if (
        !String(entry.key[0]).startsWith("userid_devicelist") &&
        entry.key[0] !== "devicelistchange_userids" && entry.key[0] !== "userid_wake"
      ) {
        left++;
      }
    }
    assertEquals(left, 0);
    const updates = await deviceListUpdatesAfter(kv, userId);
    assertEquals(updates.map((u) => [u.streamId, u.prevIds, u.deleted]), [
      [1, [], []],
      [2, [1], [deviceId]],
    ]);
    assertEquals(await store.removeDevices(userId, [deviceId]), null);
  } finally {
    kv.close();
  }
});

Deno.test("the reader returns all devices' keys or the listed ones", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvDeviceKeyStore(kv);
    const stored: Record<string, JsonObject> = {};
    for (const deviceId of ["ONE", "TWO"]) {
      const keys = await (await newTestDevice(ALICE, deviceId)).deviceKeys();
      stored[deviceId] = keys;
      await store.upload(ALICE, deviceId, {
        deviceKeys: () => keys,
        oneTimeKeys: [],
        fallbackKeys: [],
      });
    }
    const all = await store.deviceKeys(new Map([[ALICE, []], ["@bob:example.org", []]]));
    assertEquals(Object.fromEntries(all.get(ALICE)!), stored);
    assertEquals(all.get("@bob:example.org")?.size, 0);
    const some = await store.deviceKeys(new Map([[ALICE, ["TWO", "NONE", "TWO"]]]));
    assertEquals([...some.get(ALICE)!.keys()], ["TWO"]);
  } finally {
    kv.close();
  }
});

Deno.test("removing more devices than one commit can check takes one update per group", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvDeviceKeyStore(kv);
    const deviceIds = Array.from({ length: 40 }, (_, i) => `D${String(i).padStart(2, "0")}`);
    for (const deviceId of deviceIds) {
      const device = await newTestDevice(ALICE, deviceId);
      const keys = await device.deviceKeys();
      await store.upload(ALICE, deviceId, {
        deviceKeys: () => keys,
        oneTimeKeys: uploaded(await device.oneTimeKeys(2)),
        fallbackKeys: uploaded(await device.fallbackKey("FB")),
      });
    }
    // A device that only ever uploaded one-time keys has nothing to announce.
    await store.upload(ALICE, "KEYLESS", {
      oneTimeKeys: uploaded({ [`${ALG}:X`]: randomKey() }),
      fallbackKeys: [],
    });
    assert(await store.removeDevices(ALICE, [...deviceIds, "KEYLESS"]) !== null);
    const updates = (await deviceListUpdatesAfter(kv, ALICE)).filter((u) => u.deleted.length > 0);
    assertEquals(updates.map((u) => u.deleted.length), [32, 8]);
    assertEquals(updates.flatMap((u) => u.deleted).sort(), deviceIds);
    for (
      const prefix of [
        ["userdeviceid_devicekeys"],
        ["userdevicealgkeyid_onetimekey"],
        ["userdevicealgseqkeyid_onetimekeyqueue"],
        ["userdevicealg_fallbackkey"],
        ["userdeviceid_keyuploadhead"],
      ]
    ) {
      let n = 0;
      for await (const _ of kv.list({ prefix })) n++;
      assertEquals(n, 0, String(prefix));
    }
  } finally {
    kv.close();
  }
});

Deno.test("reading thousands of users' device keys keeps a bounded number of reads in flight", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const users = Array.from({ length: 1000 }, (_, i) => `@u${i}:example.org`);
    const writer = new KvDeviceKeyStore(kv);
    for (const userId of users.slice(0, 3)) {
      const keys = await (await newTestDevice(userId, "DEV")).deviceKeys();
      await writer.upload(userId, "DEV", {
        deviceKeys: () => keys,
        oneTimeKeys: [],
        fallbackKeys: [],
      });
    }
    let inFlight = 0;
    let peak = 0;
    const track = <T>(work: () => Promise<T>) => {
      peak = Math.max(peak, ++inFlight);
      return work().finally(() => inFlight--);
    };
    // A KV whose reads count how many are running at once.
    const counting = new Proxy(kv, {
      get(target, name) {
        if (name === "getMany") {
          return (keys: Deno.KvKey[]) => track(() => target.getMany(keys));
        }
        if (name === "list") {
          return (selector: Deno.KvListSelector, options?: Deno.KvListOptions) => {
            const entries = target.list(selector, options);
            return (async function* () {
              peak = Math.max(peak, ++inFlight);
              try {
                yield* entries;
              } finally {
                inFlight--;
              }
            })();
          };
        }
        const value = Reflect.get(target, name, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const reader = new KvDeviceKeyStore(counting);
    const all = await reader.deviceKeys(new Map(users.map((u) => [u, []])));
    const named = await reader.deviceKeys(new Map(users.map((u) => [u, ["DEV"]])));
    for (const result of [all, named]) {
      assertEquals(result.size, users.length);
      assertEquals([...result.get(users[2])!.keys()], ["DEV"]);
      assertEquals(result.get(users[3])!.size, 0);
    }
    assert(peak <= 32, `at most 32 reads at once, saw ${peak}`);
  } finally {
    kv.close();
  }
});

Deno.test("a retried upload does not put back a one-time key a claim already handed out", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvDeviceKeyStore(kv);
    const device = await newTestDevice(ALICE, "DEV");
    // The upload's response is lost; meanwhile a claim takes the oldest key; the client sends
    // the same upload again.
    const keys = uploaded(await device.oneTimeKeys(3));
    const upload = { oneTimeKeys: keys, fallbackKeys: [] };
    await store.upload(ALICE, "DEV", upload);
    const first = await store.claim(ALICE, "DEV", ALG);
    assertEquals(first?.keyId, "AAAA0");
    const retried = await store.upload(ALICE, "DEV", upload);
    assertEquals(retried.conflictingOneTimeKeys, []);
    assertEquals(await store.oneTimeKeyCounts(ALICE, "DEV"), { [ALG]: 2 });
    const rest = [];
    for (let i = 0; i < 3; i++) rest.push((await store.claim(ALICE, "DEV", ALG))?.keyId ?? null);
    assertEquals(rest, ["AAAA1", "AAAA2", null]);
    // New keys still go in, and device removal clears the claimed IDs as well.
    await store.upload(ALICE, "DEV", {
      oneTimeKeys: uploaded(await device.oneTimeKeys(1, "B")),
      fallbackKeys: [],
    });
    assertEquals(await store.oneTimeKeyCounts(ALICE, "DEV"), { [ALG]: 1 });
    await store.removeDevices(ALICE, ["DEV"]);
    const left: string[] = [];
    for await (const entry of kv.list({ prefix: [] })) left.push(String(entry.key[0]));
    assertEquals(
      left.filter((table) => !table.includes("devicelist") && table !== "userid_wake"),
      [],
    );
  } finally {
    kv.close();
  }
});
