/**
 * KvOAuthGrantStore (kv/oauth_grant_store.ts): a code is taken by exactly one of many racing
 * takers, records past `expiresAt` read as absent, user codes are unique, a decided device
 * grant is deleted with its user code, and every process ends up with the same signing key.
 */
import { assert, assertEquals } from "../assert.ts";
import { KvOAuthGrantStore } from "../../kv/oauth_grant_store.ts";
import type {
  AuthorizationCodeRecord,
  DeviceGrantRecord,
} from "../../domain/ports/oauth_grant_store.ts";
import type { MatrixScope } from "../../domain/oauth/oauth_types.ts";

const SCOPE: MatrixScope = {
  api: true,
  openid: false,
  deviceId: "DEV",
  scope: "urn:matrix:client:api:* urn:matrix:client:device:DEV",
};

function codeRecord(expiresAt: number): AuthorizationCodeRecord {
  return {
    clientId: "client",
    redirectUri: "https://app.example.org/cb",
    codeChallenge: "c".repeat(43),
    userId: "@alice:example.org",
    scope: SCOPE,
    authTime: 0,
    expiresAt,
  };
}

function deviceRecord(userCode: string, expiresAt: number): DeviceGrantRecord {
  return { userCode, clientId: "client", scope: SCOPE, status: "pending", interval: 5, expiresAt };
}

Deno.test("takeCode: one of ten racing takers gets the code, and a spent record is left", async () => {
  using kv = await Deno.openKv(":memory:");
  const store = new KvOAuthGrantStore(kv);
  const now = Date.now();
  await store.putCode("h1", codeRecord(now + 60_000));
  const results = await Promise.all(
    Array.from({ length: 10 }, () => store.takeCode("h1", now + 3600_000)),
  );
  assertEquals(results.filter((r) => r !== null).length, 1);
  assertEquals(await store.takeCode("h1", now + 3600_000), null);
  assertEquals((await store.getSpentCode("h1"))?.clientId, "client");
  assertEquals(await store.getSpentCode("unknown"), null);
});

Deno.test("spent codes and device grants past expiresAt read as absent", async () => {
  using kv = await Deno.openKv(":memory:");
  let now = 1_000_000;
  const store = new KvOAuthGrantStore(kv, () => now);
  await store.putCode("h", codeRecord(now + 1000));
  await store.takeCode("h", now + 2000);
  assert(await store.createDeviceGrant("d", deviceRecord("BCDFGHJK", now + 2000)));
  assertEquals(await store.deviceCodeHashFor("BCDFGHJK"), "d");
  now += 2000;
  assertEquals(await store.getSpentCode("h"), null);
  assertEquals(await store.getDeviceGrant("d"), null);
  assertEquals(await store.deviceCodeHashFor("BCDFGHJK"), null);
  // The poller still sees the expired record through an update, to answer expired_token.
  const seen = await store.updateDeviceGrant("d", () => null);
  assertEquals(seen?.userCode, "BCDFGHJK");
});

Deno.test("device grants: a taken user code is refused; delete drops the user code too", async () => {
  using kv = await Deno.openKv(":memory:");
  const store = new KvOAuthGrantStore(kv);
  const later = Date.now() + 60_000;
  assert(await store.createDeviceGrant("d1", deviceRecord("BCDFGHJK", later)));
  assertEquals(await store.createDeviceGrant("d2", deviceRecord("BCDFGHJK", later)), false);
  assertEquals(await store.getDeviceGrant("d2"), null, "nothing of the refused one written");
  const updated = await store.updateDeviceGrant("d1", (r) => ({ ...r, status: "approved" }));
  assertEquals(updated?.status, "pending", "the record the update was given");
  assertEquals((await store.getDeviceGrant("d1"))?.status, "approved");
  await store.updateDeviceGrant("d1", () => "delete");
  assertEquals(await store.getDeviceGrant("d1"), null);
  assertEquals(await store.deviceCodeHashFor("BCDFGHJK"), null);
  assert(await store.createDeviceGrant("d3", deviceRecord("BCDFGHJK", later)), "code free again");
});

Deno.test("getOrCreate: racing processes end up with one signing key", async () => {
  using kv = await Deno.openKv(":memory:");
  const stores = [new KvOAuthGrantStore(kv), new KvOAuthGrantStore(kv)];
  let made = 0;
  const keys = await Promise.all(
    Array.from(
      { length: 6 },
      (_, i) => stores[i % 2].getOrCreate(() => Promise.resolve({ kty: "EC", x: String(made++) })),
    ),
  );
  assert(made >= 1);
  for (const key of keys) assertEquals(key, keys[0]);
  assertEquals(await stores[1].getOrCreate(() => Promise.reject(new Error("not called"))), keys[0]);
});
