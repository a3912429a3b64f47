/**
 * The device key use cases over the KV store (`:memory:`): device keys are the session's own,
 * well-formed and never replaced by other identity keys; one-time keys are unique by ID and
 * claimed oldest upload first; fallback keys step in when none is left and report their use;
 * device-list updates are recorded and announced; device deletion removes everything.
 */
import { assert, assertEquals } from "../../assert.ts";
import { MatrixError } from "../../../domain/errors.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import {
  DeviceKeyService,
  MAX_FALLBACK_ALGORITHMS,
} from "../../../domain/e2ee/device_key_service.ts";
import { OneTimeKeyStream } from "../../../domain/e2ee/one_time_key_stream.ts";
import { emptySyncResponse, isEmptySyncResponse } from "../../../domain/sync/sync_response.ts";
import { KvDeviceKeyStore } from "../../../kv/device_key_store.ts";
import { deviceListUpdatesAfter } from "../../../kv/device_list_log.ts";
import { newTestDevice, randomKey } from "./device_keys_fixture.ts";

const ALICE = "@alice:example.org";
const SERVER = "example.org";

async function setup() {
  const kv = await Deno.openKv(":memory:");
  const woken: { userIds: readonly string[]; versionstamp: string }[] = [];
  const store = new KvDeviceKeyStore(kv);
  const service = new DeviceKeyService({
    store,
    serverName: SERVER,
    deviceListNotifier: {
      changed: (userIds, versionstamp) => {
        woken.push({ userIds, versionstamp });
        return Promise.resolve();
      },
    },
  });
  const device = await newTestDevice(ALICE, "ALICEDEV");
  return { kv, store, service, woken, device };
}

/** The MatrixError `fn` rejects with. */
async function matrixError(fn: () => Promise<unknown>): Promise<MatrixError> {
  try {
    await fn();
  } catch (error) {
    if (error instanceof MatrixError) return error;
    throw error;
  }
  throw new Error("expected a MatrixError");
}

Deno.test("first device keys are stored with a device-list update, announced once", async () => {
  const { kv, store, service, woken, device } = await setup();
  try {
    const keys = await device.deviceKeys();
    const res = await service.upload(ALICE, "ALICEDEV", { device_keys: keys });
    assertEquals(res, { one_time_key_counts: { signed_curve25519: 0 } });
    const stored = await store.deviceKeys(new Map([[ALICE, []]]));
    assertEquals(stored.get(ALICE)?.get("ALICEDEV"), keys);
    const updates = await deviceListUpdatesAfter(kv, ALICE);
    assertEquals(updates.map((u) => [u.streamId, u.prevIds, u.deviceIds, u.deleted]), [
      [1, [], ["ALICEDEV"], []],
    ]);
    assertEquals(woken.length, 1);
    assertEquals(woken[0].userIds, [ALICE]);

    // The same keys again: nothing changes, nothing is announced.
    await service.upload(ALICE, "ALICEDEV", { device_keys: keys });
    assertEquals((await deviceListUpdatesAfter(kv, ALICE)).length, 1);
    assertEquals(woken.length, 1);
  } finally {
    kv.close();
  }
});

Deno.test("a re-upload adding a signature merges it and chains the next update", async () => {
  const { kv, store, service, device } = await setup();
  try {
    const keys = await device.deviceKeys();
    await service.upload(ALICE, "ALICEDEV", { device_keys: keys });
    const extraSignature = { "@alice:example.org": { "ed25519:MASTER": "c2lnbmF0dXJl" } };
    const withMore = {
      ...keys,
      signatures: {
        [ALICE]: {
          ...(keys.signatures as JsonObject)[ALICE] as JsonObject,
          ...extraSignature[ALICE],
        },
      },
    };
    await service.upload(ALICE, "ALICEDEV", { device_keys: withMore });
    // An upload carrying only the self-signature keeps the added one.
    await service.upload(ALICE, "ALICEDEV", { device_keys: keys });
    const stored = (await store.deviceKeys(new Map([[ALICE, ["ALICEDEV"]]]))).get(ALICE)!;
    assertEquals(
      Object.keys((stored.get("ALICEDEV")!.signatures as JsonObject)[ALICE] as JsonObject).sort(),
      ["ed25519:ALICEDEV", "ed25519:MASTER"],
    );
    const updates = await deviceListUpdatesAfter(kv, ALICE);
    assertEquals(updates.map((u) => [u.streamId, u.prevIds]), [[1, []], [2, [1]]]);
  } finally {
    kv.close();
  }
});

Deno.test("different identity keys for a device that has keys are refused", async () => {
  const { kv, store, service, device } = await setup();
  try {
    const keys = await device.deviceKeys();
    await service.upload(ALICE, "ALICEDEV", { device_keys: keys });
    const impostor = await newTestDevice(ALICE, "ALICEDEV");
    const error = await matrixError(() =>
      impostor.deviceKeys().then((k) => service.upload(ALICE, "ALICEDEV", { device_keys: k }))
    );
    assertEquals([error.status, error.errcode], [400, "M_INVALID_PARAM"]);
    const stored = await store.deviceKeys(new Map([[ALICE, ["ALICEDEV"]]]));
    assertEquals(stored.get(ALICE)?.get("ALICEDEV"), keys);
    assertEquals((await deviceListUpdatesAfter(kv, ALICE)).length, 1);
  } finally {
    kv.close();
  }
});

Deno.test("device keys must be the session's and well-formed; signatures are not checked", async () => {
  const { kv, store, service, device } = await setup();
  try {
    const cases: [JsonObject, string][] = [
      [await device.deviceKeys({ user_id: "@bob:example.org" }), "M_INVALID_PARAM"],
      [await device.deviceKeys({ device_id: "OTHER" }), "M_INVALID_PARAM"],
      [{ user_id: ALICE, device_id: "ALICEDEV" }, "M_BAD_JSON"],
      [await device.deviceKeys({ algorithms: "m.megolm.v1.aes-sha2" }), "M_BAD_JSON"],
      [await device.deviceKeys({ keys: { ALICEDEV: device.ed25519 } }), "M_BAD_JSON"],
      [await device.deviceKeys({ keys: { "ed25519:ALICEDEV": 7 } }), "M_BAD_JSON"],
      [{ ...await device.deviceKeys(), signatures: { [ALICE]: "x" } }, "M_BAD_JSON"],
    ];
    for (const [keys, errcode] of cases) {
      const error = await matrixError(() =>
        service.upload(ALICE, "ALICEDEV", { device_keys: keys })
      );
      assertEquals([error.status, error.errcode], [400, errcode], JSON.stringify(keys));
    }
    assertEquals((await store.deviceKeys(new Map([[ALICE, []]]))).get(ALICE)?.size ?? 0, 0);

    // Clients verify a device's self-signature before trusting its keys, so the server stores
    // keys it cannot verify (as Synapse does): here a placeholder key and signature.
    const placeholder = {
      user_id: ALICE,
      device_id: "ALICEDEV",
      algorithms: ["m.olm.v1.curve25519-aes-sha2"],
      keys: { "curve25519:ALICEDEV": "curve25519+key", "ed25519:ALICEDEV": "ed25519+key" },
      signatures: { [ALICE]: { "ed25519:ALICEDEV": "self+signature" } },
    };
    await service.upload(ALICE, "ALICEDEV", { device_keys: placeholder });
    const stored = await store.deviceKeys(new Map([[ALICE, ["ALICEDEV"]]]));
    assertEquals(stored.get(ALICE)?.get("ALICEDEV"), placeholder);
  } finally {
    kv.close();
  }
});

Deno.test("one-time keys: counts, same-content re-upload ignored, other content refused whole", async () => {
  const { kv, service, device } = await setup();
  try {
    const batch = await device.oneTimeKeys(5);
    const res = await service.upload(ALICE, "ALICEDEV", { one_time_keys: batch });
    assertEquals(res.one_time_key_counts, { signed_curve25519: 5 });
    assertEquals(
      (await service.upload(ALICE, "ALICEDEV", { one_time_keys: batch })).one_time_key_counts,
      { signed_curve25519: 5 },
    );
    const conflicting = {
      ...await device.oneTimeKeys(3, "NEW"),
      "signed_curve25519:AAAA0": await device.sign({ key: randomKey() }),
    };
    const error = await matrixError(() =>
      service.upload(ALICE, "ALICEDEV", { one_time_keys: conflicting })
    );
    assertEquals([error.status, error.errcode], [400, "M_INVALID_PARAM"]);
    assert(error.message.includes("signed_curve25519:AAAA0"));
    // Nothing of the refused upload was stored, not even its new keys.
    assertEquals(await service.oneTimeKeyCounts(ALICE, "ALICEDEV"), { signed_curve25519: 5 });
    const plain = await service.upload(ALICE, "ALICEDEV", {
      one_time_keys: { "curve25519:K1": randomKey() },
    });
    assertEquals(plain.one_time_key_counts, { signed_curve25519: 5, curve25519: 1 });
  } finally {
    kv.close();
  }
});

Deno.test("malformed one-time and fallback keys are refused with M_INVALID_PARAM", async () => {
  const { kv, service, device } = await setup();
  try {
    const bad: JsonObject[] = [
      { one_time_keys: { "no-colon": randomKey() } },
      { one_time_keys: { ":AAAA": randomKey() } },
      { one_time_keys: { "signed_curve25519:": randomKey() } },
      { one_time_keys: { "signed_curve25519:A": 42 } },
      { one_time_keys: { "signed_curve25519:A": { signatures: {} } } },
      { one_time_keys: { "signed_curve25519:A": { key: randomKey(), signatures: [] } } },
      { one_time_keys: { "signed_curve25519:A": "x".repeat(5000) } },
      { one_time_keys: { [`signed_curve25519:${"A".repeat(65)}`]: randomKey() } },
      { one_time_keys: [] as unknown as JsonObject },
      { fallback_keys: { ...await device.fallbackKey("F1"), ...await device.fallbackKey("F2") } },
    ];
    for (const body of bad) {
      const error = await matrixError(() => service.upload(ALICE, "ALICEDEV", body));
      assertEquals([error.status, error.errcode], [400, "M_INVALID_PARAM"], JSON.stringify(body));
    }
    assertEquals(await service.oneTimeKeyCounts(ALICE, "ALICEDEV"), { signed_curve25519: 0 });
    assertEquals(await service.unusedFallbackKeyTypes(ALICE, "ALICEDEV"), []);
  } finally {
    kv.close();
  }
});

Deno.test("claims hand out the oldest upload first, then the fallback key, marking it used", async () => {
  const { kv, service, device } = await setup();
  try {
    // Key IDs sort against upload order on purpose: the order comes from the upload.
    await service.upload(ALICE, "ALICEDEV", {
      one_time_keys: await device.oneTimeKeys(2, "Z"),
      fallback_keys: await device.fallbackKey("FB1"),
    });
    await service.upload(ALICE, "ALICEDEV", { one_time_keys: await device.oneTimeKeys(1, "A") });
    assertEquals(await service.unusedFallbackKeyTypes(ALICE, "ALICEDEV"), ["signed_curve25519"]);
    const query = { [ALICE]: { ALICEDEV: "signed_curve25519" } };
    const claimed: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await service.claim(query, 10_000);
      assertEquals(res.failures, {});
      claimed.push(...Object.keys(res.one_time_keys[ALICE].ALICEDEV));
    }
    assertEquals(claimed, [
      "signed_curve25519:Z0",
      "signed_curve25519:Z1",
      "signed_curve25519:A0",
      "signed_curve25519:FB1",
      "signed_curve25519:FB1",
    ]);
    assertEquals(await service.oneTimeKeyCounts(ALICE, "ALICEDEV"), { signed_curve25519: 0 });
    assertEquals(await service.unusedFallbackKeyTypes(ALICE, "ALICEDEV"), []);

    // The same fallback key again keeps its used flag; a new one clears it.
    const fallback = (await service.claim(query, 0)).one_time_keys[ALICE].ALICEDEV;
    await service.upload(ALICE, "ALICEDEV", { fallback_keys: fallback });
    assertEquals(await service.unusedFallbackKeyTypes(ALICE, "ALICEDEV"), []);
    await service.upload(ALICE, "ALICEDEV", {
      "org.matrix.msc2732.fallback_keys": await device.fallbackKey("FB2"),
    });
    assertEquals(await service.unusedFallbackKeyTypes(ALICE, "ALICEDEV"), ["signed_curve25519"]);
    const next = await service.claim(query, 0);
    assertEquals(Object.keys(next.one_time_keys[ALICE].ALICEDEV), ["signed_curve25519:FB2"]);
  } finally {
    kv.close();
  }
});

Deno.test("remote claims go once per server with its users only; failures stay per server", async () => {
  const { kv, store, device } = await setup();
  const asked: { server: string; users: Record<string, Record<string, string>>; ms: number }[] = [];
  const service = new DeviceKeyService({
    store,
    serverName: SERVER,
    deviceListNotifier: { changed: () => Promise.resolve() },
    remote: {
      claim(server, users, ms) {
        asked.push({ server, users, ms });
        if (server === "down.example") return Promise.reject(new Error("unreachable"));
        const out: Record<string, Record<string, Record<string, string>>> = {};
        for (const [userId, devices] of Object.entries(users)) {
          out[userId] = Object.fromEntries(
            Object.entries(devices).map(([d, alg]) => [d, { [`${alg}:K${d}`]: `key-${d}` }]),
          );
        }
        return Promise.resolve({ one_time_keys: out });
      },
    },
  });
  try {
    await service.upload(ALICE, "ALICEDEV", { one_time_keys: await device.oneTimeKeys(1) });
    const res = await service.claim({
      [ALICE]: { ALICEDEV: "signed_curve25519" },
      "@carol:remote.example": { C1: "signed_curve25519", C2: "signed_curve25519" },
      "@dan:remote.example": { D1: "signed_curve25519" },
      "@erin:down.example": { E1: "signed_curve25519" },
    }, 2_500);
    assertEquals(
      asked.map((a) => a.server).sort(),
      ["down.example", "remote.example"],
    );
    const remote = asked.find((a) => a.server === "remote.example")!;
    assertEquals(remote.users, {
      "@carol:remote.example": { C1: "signed_curve25519", C2: "signed_curve25519" },
      "@dan:remote.example": { D1: "signed_curve25519" },
    });
    assertEquals(remote.ms, 2_500);
    assertEquals(
      Object.keys(res.one_time_keys).sort(),
      [
        ALICE,
        "@carol:remote.example",
        "@dan:remote.example",
      ].sort(),
    );
    assertEquals(res.one_time_keys["@dan:remote.example"], {
      D1: { "signed_curve25519:KD1": "key-D1" },
    });
    assertEquals(Object.keys(res.failures), ["down.example"]);
    assertEquals(res.failures["down.example"].status, 503);
  } finally {
    kv.close();
  }
});

Deno.test("claims leave out unknown devices and report other servers as failures", async () => {
  const { kv, service, device } = await setup();
  try {
    await service.upload(ALICE, "ALICEDEV", { one_time_keys: await device.oneTimeKeys(1) });
    const res = await service.claim({
      [ALICE]: { ALICEDEV: "signed_curve25519", NOSUCH: "signed_curve25519" },
      "@nobody:example.org": { X: "signed_curve25519" },
      "@carol:remote.example": { CAROLDEV: "signed_curve25519" },
    }, 10_000);
    assertEquals(Object.keys(res.one_time_keys), [ALICE]);
    assertEquals(Object.keys(res.one_time_keys[ALICE]), ["ALICEDEV"]);
    assertEquals(Object.keys(res.failures), ["remote.example"]);
    assertEquals(res.failures["remote.example"].status, 503);
    const error = await matrixError(() =>
      service.claim({ "not-a-user": { D: "signed_curve25519" } }, 0)
    );
    assertEquals(error.errcode, "M_INVALID_PARAM");
  } finally {
    kv.close();
  }
});

Deno.test("a device may not hold more than the one-time key limit", async () => {
  const { kv, service, device } = await setup();
  try {
    const many: Record<string, string> = {};
    for (let i = 0; i < 1000; i++) many[`curve25519:K${i}`] = randomKey();
    await service.upload(ALICE, "ALICEDEV", { one_time_keys: many });
    const error = await matrixError(() =>
      device.oneTimeKeys(1, "MORE").then((k) =>
        service.upload(ALICE, "ALICEDEV", { one_time_keys: k })
      )
    );
    assertEquals(error.errcode, "M_INVALID_PARAM");
    assertEquals(
      await service.oneTimeKeyCounts(ALICE, "ALICEDEV"),
      { signed_curve25519: 0, curve25519: 1000 },
    );
  } finally {
    kv.close();
  }
});

Deno.test("device removal deletes every key, records one deleted update and is idempotent", async () => {
  const { kv, store, service, woken, device } = await setup();
  try {
    await service.upload(ALICE, "ALICEDEV", {
      device_keys: await device.deviceKeys(),
      one_time_keys: await device.oneTimeKeys(3),
      fallback_keys: await device.fallbackKey("FB"),
    });
    await service.devicesRemoved(ALICE, ["ALICEDEV"]);
    assertEquals((await store.deviceKeys(new Map([[ALICE, []]]))).get(ALICE)?.size, 0);
    assertEquals(await service.oneTimeKeyCounts(ALICE, "ALICEDEV"), { signed_curve25519: 0 });
    assertEquals(await service.unusedFallbackKeyTypes(ALICE, "ALICEDEV"), []);
    assertEquals(
      (await service.claim({ [ALICE]: { ALICEDEV: "signed_curve25519" } }, 0)).one_time_keys,
      {},
    );
    const updates = await deviceListUpdatesAfter(kv, ALICE);
    assertEquals(updates.map((u) => [u.streamId, u.prevIds, u.deviceIds, u.deleted]), [
      [1, [], ["ALICEDEV"], []],
      [2, [1], ["ALICEDEV"], ["ALICEDEV"]],
    ]);
    assertEquals(woken.length, 2);
    let left = 0;
    for await (const _ of kv.list({ prefix: [] })) left++;
    // Only the device-list log (head, two updates, two change-index entries) and the user's
    // wake key (bumped by the log's commits, for syncs in other processes) remain.
    assertEquals(left, 6);

    await service.devicesRemoved(ALICE, ["ALICEDEV"]);
    assertEquals((await deviceListUpdatesAfter(kv, ALICE)).length, 2);
    assertEquals(woken.length, 2);
  } finally {
    kv.close();
  }
});

Deno.test("the one-time key stream reports counts on every sync without making it news", async () => {
  const { kv, service, device } = await setup();
  try {
    await service.upload(ALICE, "ALICEDEV", {
      one_time_keys: await device.oneTimeKeys(2),
      fallback_keys: await device.fallbackKey("FB"),
    });
    const stream = new OneTimeKeyStream(service);
    for (const since of [undefined, "s00000000000000000001"]) {
      const response = emptySyncResponse("s00000000000000000002");
      await stream.fill({
        userId: ALICE,
        deviceId: "ALICEDEV",
        since,
        upTo: "s00000000000000000002",
        fullState: false,
        filter: {},
        joinedRoomIds: [],
        now: 0,
      }, response);
      assertEquals(response.device_one_time_keys_count, { signed_curve25519: 2 });
      assertEquals(response.device_unused_fallback_key_types, ["signed_curve25519"]);
      assert(isEmptySyncResponse(response));
    }
  } finally {
    kv.close();
  }
});

Deno.test("keys uploaded while their device is being deleted do not outlive it", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvDeviceKeyStore(kv);
    const existing = new Set(["ALICEDEV"]);
    const service = new DeviceKeyService({
      store,
      serverName: SERVER,
      deviceListNotifier: { changed: () => Promise.resolve() },
      devices: {
        getDevice: (_userId, deviceId) =>
          Promise.resolve(existing.has(deviceId) ? { deviceId } : null),
      },
    });
    const device = await newTestDevice(ALICE, "ALICEDEV");
    const request = {
      device_keys: await device.deviceKeys(),
      one_time_keys: await device.oneTimeKeys(3),
      fallback_keys: await device.fallbackKey("FB"),
    };
    // The request was authenticated; then the device was deleted and its removal hook ran
    // (finding nothing yet) before the upload committed.
    existing.delete("ALICEDEV");
    await service.devicesRemoved(ALICE, ["ALICEDEV"]);
    await service.upload(ALICE, "ALICEDEV", request);
    assertEquals((await store.deviceKeys(new Map([[ALICE, []]]))).get(ALICE)?.size, 0);
    assertEquals(await store.oneTimeKeyCounts(ALICE, "ALICEDEV"), {});
    assertEquals(await store.unusedFallbackKeyTypes(ALICE, "ALICEDEV"), []);
    assertEquals(await store.claim(ALICE, "ALICEDEV", "signed_curve25519"), null);
    // Room-mates hear that the device went away.
    const updates = await deviceListUpdatesAfter(kv, ALICE);
    assertEquals(updates.at(-1)?.deleted, ["ALICEDEV"]);
    // A device that still exists keeps what it uploaded.
    existing.add("OTHER");
    const other = await newTestDevice(ALICE, "OTHER");
    await service.upload(ALICE, "OTHER", { device_keys: await other.deviceKeys() });
    assertEquals((await store.deviceKeys(new Map([[ALICE, ["OTHER"]]]))).get(ALICE)?.size, 1);
  } finally {
    kv.close();
  }
});

Deno.test("claims skip devices that no longer exist, even if their keys are still stored", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const store = new KvDeviceKeyStore(kv);
    const existing = new Set(["ALICEDEV"]);
    const service = new DeviceKeyService({
      store,
      serverName: SERVER,
      deviceListNotifier: { changed: () => Promise.resolve() },
      devices: {
        getDevice: (_userId, deviceId) =>
          Promise.resolve(existing.has(deviceId) ? { deviceId } : null),
      },
    });
    const device = await newTestDevice(ALICE, "ALICEDEV");
    await service.upload(ALICE, "ALICEDEV", {
      device_keys: await device.deviceKeys(),
      one_time_keys: await device.oneTimeKeys(2),
    });
    const query = { [ALICE]: { ALICEDEV: "signed_curve25519" } };
    assertEquals(Object.keys((await service.claim(query, 0)).one_time_keys), [ALICE]);
    // The device was deleted, and the process stopped before the removal hook ran.
    existing.delete("ALICEDEV");
    assertEquals(await service.claim(query, 0), { one_time_keys: {}, failures: {} });
    assertEquals(await store.oneTimeKeyCounts(ALICE, "ALICEDEV"), { signed_curve25519: 1 });
  } finally {
    kv.close();
  }
});

Deno.test("a device may not pile up fallback keys of ever new algorithms", async () => {
  const { kv, service, device } = await setup();
  try {
    const fallback = async (algorithm: string, keyId: string) => ({
      [`${algorithm}:${keyId}`]: await device.sign({ key: randomKey(), fallback: true }),
    });
    // Up to the limit, 16 algorithms per upload (the per-upload maximum).
    for (let upload = 0; upload < MAX_FALLBACK_ALGORITHMS / 16; upload++) {
      const keys = {};
      for (let i = 0; i < 16; i++) Object.assign(keys, await fallback(`alg${upload}_${i}`, "K"));
      await service.upload(ALICE, "ALICEDEV", { fallback_keys: keys });
    }
    assertEquals(
      (await service.unusedFallbackKeyTypes(ALICE, "ALICEDEV")).length,
      MAX_FALLBACK_ALGORITHMS,
    );
    // One more algorithm is refused and writes nothing; replacing a stored one still works.
    const oneMore = await fallback("one_more", "K");
    const refused = await matrixError(() =>
      service.upload(ALICE, "ALICEDEV", { fallback_keys: oneMore })
    );
    assertEquals([refused.status, refused.errcode], [400, "M_INVALID_PARAM"]);
    assertEquals(
      (await service.unusedFallbackKeyTypes(ALICE, "ALICEDEV")).length,
      MAX_FALLBACK_ALGORITHMS,
    );
    await service.upload(ALICE, "ALICEDEV", { fallback_keys: await fallback("alg0_0", "NEW") });
  } finally {
    kv.close();
  }
});
