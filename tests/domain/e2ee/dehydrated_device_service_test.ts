/**
 * DehydratedDeviceService over the real account store (`:memory:` KV) and a recording stand-in
 * for the device-key service: keys are checked before anything is written, the previous device
 * is deleted through AccountService.deleteDevices (so the removal hooks run), a failed key store
 * deletes the new device again, and the store's one-commit pairing of device record and
 * dehydrated-device entry holds (creation outcomes, deletion of either kind).
 */
import { assert, assertEquals } from "../../assert.ts";
import { AccountService } from "../../../domain/accounts/account_service.ts";
import { PasswordHasher } from "../../../domain/accounts/password_hash.ts";
import { DehydratedDeviceService } from "../../../domain/e2ee/dehydrated_device_service.ts";
import { invalidParam, MatrixError } from "../../../domain/errors.ts";
import type { KeyUpload } from "../../../domain/ports/device_key_store.ts";
import { KvAccountStore } from "../../../kv/account_store.ts";
import { e2eeKeys } from "../../../kv/schema.ts";

const USER = "@alice:example.org";
const DATA = { algorithm: "org.matrix.msc3814.v2", device_pickle: "p" };

/** A device-key service stand-in that records calls; `failStore` makes storeUpload throw. */
function fakeDeviceKeys() {
  const calls: string[] = [];
  const fake = {
    calls,
    failStore: false,
    checkUpload(_userId: string, deviceId: string, request: { device_keys?: unknown }) {
      calls.push(`check ${deviceId}`);
      if (request.device_keys === "bad") throw invalidParam("bad keys");
      return { oneTimeKeys: [], fallbackKeys: [] } as KeyUpload;
    },
    storeUpload(_userId: string, deviceId: string) {
      calls.push(`store ${deviceId}`);
      if (fake.failStore) return Promise.reject(invalidParam("conflicting one-time key"));
      return Promise.resolve({ one_time_key_counts: {} });
    },
    devicesRemoved(_userId: string, deviceIds: string[]) {
      calls.push(`removed ${deviceIds.join(",")}`);
      return Promise.resolve();
    },
  };
  return fake;
}

async function setup() {
  const kv = await Deno.openKv(":memory:");
  const store = new KvAccountStore(kv);
  const accounts = new AccountService({
    store,
    serverName: "example.org",
    hasher: new PasswordHasher({ logN: 8, r: 8, p: 1 }),
  });
  const deviceKeys = fakeDeviceKeys();
  const hookCalls: string[] = [];
  accounts.devicesRemovedHooks.push((_userId, deviceIds) => {
    hookCalls.push(deviceIds.join(","));
    return deviceKeys.devicesRemoved(_userId, deviceIds);
  });
  const service = new DehydratedDeviceService({
    accounts,
    deviceKeys,
    inbox: { readInbox: () => Promise.reject(new Error("not used")) },
  });
  return { kv, store, accounts, deviceKeys, hookCalls, service };
}

/** The MatrixError `fn` rejects with (fails when it resolves or throws something else). */
async function rejection(fn: () => Promise<unknown>): Promise<MatrixError> {
  try {
    await fn();
  } catch (error) {
    if (error instanceof MatrixError) return error;
    throw error;
  }
  throw new Error("expected a MatrixError");
}

const upload = (deviceId: string, deviceKeys: unknown = { k: 1 }) => ({
  deviceId,
  deviceData: DATA,
  displayName: "Dehydrated",
  keys: { device_keys: deviceKeys },
});

Deno.test("put checks keys first, replaces the previous device through deleteDevices, then stores keys", async () => {
  const { kv, accounts, deviceKeys, hookCalls, service } = await setup();
  try {
    assertEquals(await service.put(USER, upload("D1")), { device_id: "D1" });
    assertEquals(deviceKeys.calls, ["check D1", "store D1"]);
    assertEquals(await service.get(USER), { device_id: "D1", device_data: DATA });

    deviceKeys.calls.length = 0;
    assertEquals(await service.put(USER, upload("D2")), { device_id: "D2" });
    // The old device went through the account service, so every removal hook saw it.
    assertEquals(deviceKeys.calls, ["check D2", "removed D1", "store D2"]);
    assertEquals(hookCalls, ["D1"]);
    assertEquals(await accounts.getDevice(USER, "D1"), null);
    assertEquals((await accounts.getDevice(USER, "D2"))?.displayName, "Dehydrated");

    // Bad keys: refused before anything is deleted or created.
    deviceKeys.calls.length = 0;
    assertEquals(
      (await rejection(() => service.put(USER, upload("D3", "bad")))).message,
      "bad keys",
    );
    assertEquals(deviceKeys.calls, ["check D3"]);
    assertEquals((await service.get(USER)).device_id, "D2");
    assertEquals(await accounts.getDevice(USER, "D3"), null);
    assert((await kv.get(e2eeKeys.dehydratedDevice(USER))).value);
  } finally {
    kv.close();
  }
});

Deno.test("a failed key store deletes the new device again: no dehydrated device is left half made", async () => {
  const { kv, accounts, deviceKeys, hookCalls, service } = await setup();
  try {
    deviceKeys.failStore = true;
    assertEquals(
      (await rejection(() => service.put(USER, upload("D1")))).message,
      "conflicting one-time key",
    );
    assertEquals(await accounts.getDevice(USER, "D1"), null);
    assertEquals(await accounts.dehydratedDevice(USER), null);
    assertEquals(hookCalls, ["D1"]);
    const error = await rejection(() => service.get(USER));
    assertEquals([error.errcode, error.status], ["M_NOT_FOUND", 404]);
  } finally {
    kv.close();
  }
});

Deno.test("account store: a dehydrated device and its entry are created and deleted together", async () => {
  const { kv, store } = await setup();
  try {
    const device = { userId: USER, deviceId: "D1", createdAt: 1 };
    assertEquals(await store.createDehydratedDevice(device, DATA), "created");
    assertEquals(
      await store.createDehydratedDevice({ ...device, deviceId: "D2" }, DATA),
      "occupied",
    );
    assertEquals(await store.createDehydratedDevice(device, DATA), "device_exists");
    assertEquals(await store.getDehydratedDevice(USER), { deviceId: "D1", deviceData: DATA });
    assertEquals(await store.getDevice(USER, "D2"), null);
    // Deleting an ordinary device leaves the entry alone; deleting the dehydrated one drops it.
    await store.issueTokens(USER, "PHONE", () => ({ ...device, deviceId: "PHONE" }), {
      accessHash: "h",
      access: { userId: USER, deviceId: "PHONE", tokenId: "t" },
    });
    assertEquals(await store.deleteDevices(USER, ["PHONE"]), ["h"]);
    assertEquals((await store.getDehydratedDevice(USER))?.deviceId, "D1");
    assertEquals(await store.deleteDevices(USER, ["D1"]), []);
    assertEquals(await store.getDehydratedDevice(USER), null);
    assertEquals(await store.listDevices(USER), []);
    assertEquals(
      await store.createDehydratedDevice({ ...device, deviceId: "D2" }, DATA),
      "created",
    );
  } finally {
    kv.close();
  }
});

Deno.test("login with the dehydrated device's ID is refused inside the token commit", async () => {
  const { kv, accounts, service } = await setup();
  try {
    await accounts.register({ localpart: "alice", password: "pw", inhibitLogin: true });
    await service.put(USER, upload("DEHYDRATED"));
    const error = await rejection(() =>
      accounts.loginWithPassword("alice", "pw", { deviceId: "DEHYDRATED" })
    );
    assertEquals(error.errcode, "M_INVALID_PARAM");
    const device = await accounts.getDevice(USER, "DEHYDRATED");
    assertEquals([device?.dehydrated, device?.accessTokenHash], [true, undefined]);
    // Another device ID logs in as usual.
    assertEquals(
      (await accounts.loginWithPassword("alice", "pw", { deviceId: "PHONE" })).deviceId,
      "PHONE",
    );
  } finally {
    kv.close();
  }
});
