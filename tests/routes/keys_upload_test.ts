/**
 * /keys/upload and /keys/claim over the in-process server: uploads with real signatures, counts
 * in the upload response and in every sync, 20 racing claims over HTTP on 10 one-time keys,
 * the fallback key and its used flag, the legacy r0 path form, refusals, and logout removing
 * the device's keys with a device-list update.
 */
import { assert, assertEquals } from "../assert.ts";
import { deviceListUpdatesAfter } from "../../kv/device_list_log.ts";
import { newTestDevice } from "../domain/e2ee/device_keys_fixture.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const V3 = "/_matrix/client/v3";
const R0 = "/_matrix/client/r0";
const ALG = "signed_curve25519";

async function setup() {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  const alice = await registerUser(server, "alice", "correct horse");
  const bob = await registerUser(server, "bob");
  const device = await newTestDevice(alice.userId, alice.deviceId);
  return { server, alice, bob, device };
}

Deno.test("uploaded keys are counted in the response and in full and incremental syncs", async () => {
  const { server, alice, bob, device } = await setup();
  try {
    const upload = await server.request("POST", `${V3}/keys/upload`, {
      token: alice.accessToken,
      body: {
        device_keys: await device.deviceKeys(),
        one_time_keys: await device.oneTimeKeys(3),
        fallback_keys: await device.fallbackKey("FB"),
      },
    });
    assertEquals(upload.status, 200);
    assertEquals(upload.body, { one_time_key_counts: { [ALG]: 3 } });

    const full = await server.request("GET", `${V3}/sync?timeout=0`, { token: alice.accessToken });
    assertEquals(full.body.device_one_time_keys_count, { [ALG]: 3 });
    assertEquals(full.body.device_unused_fallback_key_types, [ALG]);

    const query = { one_time_keys: { [alice.userId]: { [alice.deviceId]: ALG } } };
    for (let i = 0; i < 4; i++) {
      const claim = await server.request("POST", `${V3}/keys/claim`, {
        token: bob.accessToken,
        body: query,
      });
      assertEquals(claim.status, 200);
      const keys = claim.body.one_time_keys[alice.userId][alice.deviceId];
      assertEquals(Object.keys(keys), [i < 3 ? `${ALG}:AAAA${i}` : `${ALG}:FB`]);
    }
    const since = full.body.next_batch;
    const incremental = await server.request("GET", `${V3}/sync?timeout=0&since=${since}`, {
      token: alice.accessToken,
    });
    assertEquals(incremental.body.device_one_time_keys_count, { [ALG]: 0 });
    assertEquals(incremental.body.device_unused_fallback_key_types, []);
    // Bob has uploaded nothing: his counts are zero, but present.
    const bobs = await server.request("GET", `${V3}/sync?timeout=0`, { token: bob.accessToken });
    assertEquals(bobs.body.device_one_time_keys_count, { [ALG]: 0 });
    assertEquals(bobs.body.device_unused_fallback_key_types, []);
  } finally {
    server.close();
  }
});

Deno.test("20 parallel claims over HTTP hand out 10 one-time keys once each, the rest the fallback", async () => {
  const { server, alice, bob, device } = await setup();
  try {
    await server.request("POST", `${V3}/keys/upload`, {
      token: alice.accessToken,
      body: {
        one_time_keys: await device.oneTimeKeys(10),
        fallback_keys: await device.fallbackKey("FB"),
      },
    });
    const claims = await Promise.all(
      Array.from({ length: 20 }, () =>
        server.request("POST", `${V3}/keys/claim`, {
          token: bob.accessToken,
          body: { one_time_keys: { [alice.userId]: { [alice.deviceId]: ALG } }, timeout: 10_000 },
        })),
    );
    assert(claims.every((c) => c.status === 200));
    const ids = claims.map((c) =>
      Object.keys(c.body.one_time_keys[alice.userId][alice.deviceId])[0]
    );
    const oneTime = ids.filter((id) => id !== `${ALG}:FB`).sort();
    assertEquals(oneTime, Array.from({ length: 10 }, (_, i) => `${ALG}:AAAA${i}`).sort());
    assertEquals(ids.filter((id) => id === `${ALG}:FB`).length, 10);
    const sync = await server.request("GET", `${V3}/sync?timeout=0`, { token: alice.accessToken });
    assertEquals(sync.body.device_one_time_keys_count, { [ALG]: 0 });
    assertEquals(sync.body.device_unused_fallback_key_types, []);
  } finally {
    server.close();
  }
});

Deno.test("the legacy r0 path form uploads for the session's own device only", async () => {
  const { server, alice, device } = await setup();
  try {
    const own = await server.request("POST", `${R0}/keys/upload/${alice.deviceId}`, {
      token: alice.accessToken,
      body: { one_time_keys: await device.oneTimeKeys(2) },
    });
    assertEquals(own.status, 200);
    assertEquals(own.body.one_time_key_counts, { [ALG]: 2 });
    const other = await server.request("POST", `${R0}/keys/upload/SOMEONEELSE`, {
      token: alice.accessToken,
      body: { one_time_keys: await device.oneTimeKeys(2, "B") },
    });
    assertEquals([other.status, other.body.errcode], [400, "M_INVALID_PARAM"]);
    const r0Counts = await server.request("POST", `${R0}/keys/upload`, {
      token: alice.accessToken,
      body: {},
    });
    assertEquals(r0Counts.body, { one_time_key_counts: { [ALG]: 2 } });
  } finally {
    server.close();
  }
});

Deno.test("other identity keys, other users' keys and conflicting key IDs are refused", async () => {
  const { server, alice, device } = await setup();
  try {
    const upload = (body: unknown) =>
      server.request("POST", `${V3}/keys/upload`, { token: alice.accessToken, body });
    assertEquals((await upload({ device_keys: await device.deviceKeys() })).status, 200);
    const impostor = await newTestDevice(alice.userId, alice.deviceId);
    const replaced = await upload({ device_keys: await impostor.deviceKeys() });
    assertEquals([replaced.status, replaced.body.errcode], [400, "M_INVALID_PARAM"]);
    const shapeless = await upload({
      device_keys: { user_id: alice.userId, device_id: alice.deviceId },
    });
    assertEquals([shapeless.status, shapeless.body.errcode], [400, "M_BAD_JSON"]);
    const notMine = await upload({
      device_keys: await device.deviceKeys({ user_id: "@bob:example.org:8448" }),
    });
    assertEquals([notMine.status, notMine.body.errcode], [400, "M_INVALID_PARAM"]);

    const keys = await device.oneTimeKeys(2);
    assertEquals((await upload({ one_time_keys: keys })).status, 200);
    const again = await upload({ one_time_keys: keys });
    assertEquals(again.body, { one_time_key_counts: { [ALG]: 2 } });
    const conflict = await upload({
      one_time_keys: { [`${ALG}:AAAA0`]: await device.sign({ key: "b3RoZXI" }) },
    });
    assertEquals([conflict.status, conflict.body.errcode], [400, "M_INVALID_PARAM"]);
  } finally {
    server.close();
  }
});

Deno.test("claims report other servers as failures and refuse malformed queries", async () => {
  const { server, bob } = await setup();
  try {
    const claim = (body: unknown) =>
      server.request("POST", `${V3}/keys/claim`, { token: bob.accessToken, body });
    const remote = await claim({
      one_time_keys: { "@carol:elsewhere.example": { CAROL: ALG } },
      timeout: 999_999_999,
    });
    assertEquals(remote.status, 200);
    assertEquals(remote.body.one_time_keys, {});
    assertEquals(Object.keys(remote.body.failures), ["elsewhere.example"]);
    const negative = await claim({ one_time_keys: {}, timeout: -5 });
    assertEquals(negative.body, { one_time_keys: {}, failures: {} });
    const missing = await claim({});
    assertEquals([missing.status, missing.body.errcode], [400, "M_MISSING_PARAM"]);
    const badUser = await claim({ one_time_keys: { "carol": { D: ALG } } });
    assertEquals([badUser.status, badUser.body.errcode], [400, "M_INVALID_PARAM"]);
    const badAlgorithm = await claim({ one_time_keys: { "@carol:example.org": { D: 7 } } });
    assertEquals([badAlgorithm.status, badAlgorithm.body.errcode], [400, "M_BAD_JSON"]);
    const unauthenticated = await server.request("POST", `${V3}/keys/claim`, {
      body: { one_time_keys: {} },
    });
    assertEquals(unauthenticated.status, 401);
  } finally {
    server.close();
  }
});

Deno.test("logging a device out deletes its keys and records it deleted in the device list", async () => {
  const { server, alice, bob } = await setup();
  try {
    const login = await server.request("POST", `${V3}/login`, {
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: "alice" },
        password: "correct horse",
      },
    });
    assertEquals(login.status, 200);
    const second = await newTestDevice(alice.userId, login.body.device_id);
    await server.request("POST", `${V3}/keys/upload`, {
      token: login.body.access_token,
      body: {
        device_keys: await second.deviceKeys(),
        one_time_keys: await second.oneTimeKeys(2),
        fallback_keys: await second.fallbackKey("FB"),
      },
    });
    assertEquals(
      (await server.request("POST", `${V3}/logout`, { token: login.body.access_token })).status,
      200,
    );
    const claim = await server.request("POST", `${V3}/keys/claim`, {
      token: bob.accessToken,
      body: { one_time_keys: { [alice.userId]: { [login.body.device_id]: ALG } } },
    });
    assertEquals(claim.body.one_time_keys, {});
    const updates = await deviceListUpdatesAfter(server.kv, alice.userId);
    const deleted = updates.filter((u) => u.deleted.includes(login.body.device_id));
    assertEquals(deleted.length, 1);
    assertEquals(deleted[0].prevIds, [deleted[0].streamId - 1]);
    assertEquals(
      await server.deps.deviceKeys.oneTimeKeyCounts(alice.userId, login.body.device_id),
      {
        [ALG]: 0,
      },
    );
  } finally {
    server.close();
  }
});
