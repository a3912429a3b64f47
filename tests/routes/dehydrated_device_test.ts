/**
 * Dehydrated devices (MSC3814) over the in-process server: upload with real signed keys (listed
 * by /devices and /keys/query, claimable, announced in the device list), refusals that write
 * nothing, no login as the device, replacement of the previous device with its keys and inbox,
 * DELETE and deletion through the ordinary device endpoints, the inbox paged by GET and by the
 * older POST form without deleting anything, concurrent uploads leaving one device, and
 * ownership of the events endpoint.
 */
import { assert, assertEquals } from "../assert.ts";
import { deviceListUpdatesAfter } from "../../kv/device_list_log.ts";
import { e2eeKeys } from "../../kv/schema.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import { newTestDevice, randomKey } from "../domain/e2ee/device_keys_fixture.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const V3 = "/_matrix/client/v3";
const MSC = "/_matrix/client/unstable/org.matrix.msc3814.v1";
const ALG = "signed_curve25519";
const PASSWORD = "correct horse";

type Server = Awaited<ReturnType<typeof startTestServer>>;

async function setup() {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  const alice = await registerUser(server, "alice", PASSWORD);
  const bob = await registerUser(server, "bob");
  return { server, alice, bob };
}

/** A device ID as clients make them: the unpadded base64 curve25519 key, `/` and `+` included. */
function dehydratedId(tag: string): string {
  return `${tag}+/${randomKey().slice(0, 20)}`;
}

/** A PUT body for `deviceId`: self-signed device keys marked dehydrated, 3 one-time keys and a fallback key. */
async function dehydratedBody(userId: string, deviceId: string, extra: JsonObject = {}) {
  const device = await newTestDevice(userId, deviceId);
  return {
    device_id: deviceId,
    device_data: { algorithm: "org.matrix.msc3814.v2", device_pickle: "p1ckle", nonce: "n0nce" },
    initial_device_display_name: "Dehydrated device",
    device_keys: await device.deviceKeys({ dehydrated: true }),
    one_time_keys: await device.oneTimeKeys(3),
    fallback_keys: await device.fallbackKey("FB"),
    ...extra,
  };
}

async function put(server: Server, token: string, body: unknown) {
  return await server.request("PUT", `${MSC}/dehydrated_device`, { token, body });
}

async function countEntries(kv: Deno.Kv): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix: [] })) n++;
  return n;
}

async function inboxSize(kv: Deno.Kv, userId: string, deviceId: string): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix: e2eeKeys.toDeviceInboxPrefix(userId, deviceId) })) n++;
  return n;
}

async function sendTo(server: Server, token: string, txnId: string, to: string, device: string) {
  const res = await server.request("PUT", `${V3}/sendToDevice/m.test/${txnId}`, {
    token,
    body: { messages: { [to]: { [device]: { n: Number(txnId.slice(1)) } } } },
  });
  assertEquals(res.status, 200);
}

const eventsPath = (deviceId: string) =>
  `${MSC}/dehydrated_device/${encodeURIComponent(deviceId)}/events`;

Deno.test("without a dehydrated device: GET and DELETE are 404 M_NOT_FOUND, events 403, no token 401", async () => {
  const { server, alice } = await setup();
  try {
    const token = alice.accessToken;
    const get = await server.request("GET", `${MSC}/dehydrated_device`, { token });
    assertEquals([get.status, get.body.errcode], [404, "M_NOT_FOUND"]);
    const del = await server.request("DELETE", `${MSC}/dehydrated_device`, { token });
    assertEquals([del.status, del.body.errcode], [404, "M_NOT_FOUND"]);
    for (const method of ["GET", "POST"]) {
      const events = await server.request(method, eventsPath("X"), { token });
      assertEquals([events.status, events.body.errcode], [403, "M_FORBIDDEN"]);
    }
    const anonymous = await server.request("GET", `${MSC}/dehydrated_device`);
    assertEquals([anonymous.status, anonymous.body.errcode], [401, "M_MISSING_TOKEN"]);
  } finally {
    server.close();
  }
});

Deno.test("PUT creates a tokenless device: GET, /devices, /keys/query, claims and the device list see it", async () => {
  const { server, alice, bob } = await setup();
  try {
    const deviceId = dehydratedId("A");
    const body = await dehydratedBody(alice.userId, deviceId);
    const res = await put(server, alice.accessToken, body);
    assertEquals([res.status, res.body], [200, { device_id: deviceId }]);

    const got = await server.request("GET", `${MSC}/dehydrated_device`, {
      token: alice.accessToken,
    });
    assertEquals(got.body, { device_id: deviceId, device_data: body.device_data });

    // Synapse lists it like any device (clients tell it apart by `dehydrated` in its keys).
    const devices = await server.request("GET", `${V3}/devices`, { token: alice.accessToken });
    const listed = devices.body.devices.find((d: JsonObject) => d.device_id === deviceId);
    assertEquals(listed?.display_name, "Dehydrated device");
    const record = await server.deps.accounts.getDevice(alice.userId, deviceId);
    assertEquals(record?.dehydrated, true);
    assertEquals([record?.accessTokenHash, record?.refreshTokenHash], [undefined, undefined]);

    const query = await server.request("POST", `${V3}/keys/query`, {
      token: bob.accessToken,
      body: { device_keys: { [alice.userId]: [] } },
    });
    const keys = query.body.device_keys[alice.userId][deviceId];
    assertEquals(keys.dehydrated, true);
    assertEquals(keys.keys, body.device_keys.keys);
    assertEquals(keys.unsigned, { device_display_name: "Dehydrated device" });

    // Announced like any new device's keys, once.
    const updates = await deviceListUpdatesAfter(server.kv, alice.userId);
    assertEquals(updates.filter((u) => u.deviceIds.includes(deviceId)).length, 1);

    // Other users' clients open olm sessions with its one-time keys, then its fallback key.
    const claimed: string[] = [];
    for (let i = 0; i < 4; i++) {
      const claim = await server.request("POST", `${V3}/keys/claim`, {
        token: bob.accessToken,
        body: { one_time_keys: { [alice.userId]: { [deviceId]: ALG } } },
      });
      claimed.push(...Object.keys(claim.body.one_time_keys[alice.userId][deviceId]));
    }
    assertEquals(claimed, [`${ALG}:AAAA0`, `${ALG}:AAAA1`, `${ALG}:AAAA2`, `${ALG}:FB`]);
  } finally {
    server.close();
  }
});

Deno.test("no login as the dehydrated device: refused, and the device keeps no tokens", async () => {
  const { server, alice } = await setup();
  try {
    const deviceId = dehydratedId("L");
    assertEquals(
      (await put(server, alice.accessToken, await dehydratedBody(alice.userId, deviceId))).status,
      200,
    );
    const before = await countEntries(server.kv);
    const login = await server.request("POST", `${V3}/login`, {
      body: { type: "m.login.password", user: "alice", password: PASSWORD, device_id: deviceId },
    });
    assertEquals([login.status, login.body.errcode], [400, "M_INVALID_PARAM"]);
    assertEquals(await countEntries(server.kv), before);
    const record = await server.deps.accounts.getDevice(alice.userId, deviceId);
    assertEquals([record?.dehydrated, record?.accessTokenHash], [true, undefined]);
  } finally {
    server.close();
  }
});

Deno.test("refused uploads write nothing and keep the previous dehydrated device", async () => {
  const { server, alice } = await setup();
  try {
    const token = alice.accessToken;
    const first = dehydratedId("F");
    assertEquals((await put(server, token, await dehydratedBody(alice.userId, first))).status, 200);
    const id = dehydratedId("R");
    const good = await dehydratedBody(alice.userId, id);
    const misnamed = {
      ...good.device_keys,
      keys: { ...good.device_keys.keys as JsonObject, extra: randomKey() },
    };
    const otherDevice = await newTestDevice(alice.userId, "SOMEONE_ELSE");
    const cases: [string, unknown, number, string][] = [
      ["missing device_keys", { ...good, device_keys: undefined }, 400, "M_MISSING_PARAM"],
      ["missing device_id", { ...good, device_id: undefined }, 400, "M_MISSING_PARAM"],
      ["missing device_data", { ...good, device_data: undefined }, 400, "M_MISSING_PARAM"],
      ["device_data without algorithm", { ...good, device_data: { x: 1 } }, 400, "M_BAD_JSON"],
      ["device_data not an object", { ...good, device_data: "x" }, 400, "M_BAD_JSON"],
      [
        "device_data too large",
        { ...good, device_data: { algorithm: "a", pad: "x".repeat(40_000) } },
        413,
        "M_TOO_LARGE",
      ],
      ["a key name without algorithm", { ...good, device_keys: misnamed }, 400, "M_BAD_JSON"],
      [
        "keys of another device ID",
        { ...good, device_keys: await otherDevice.deviceKeys() },
        400,
        "M_INVALID_PARAM",
      ],
      ["an empty device ID", { ...good, device_id: "" }, 400, "M_INVALID_PARAM"],
      ["a bad one-time key", { ...good, one_time_keys: { nocolon: "k" } }, 400, "M_INVALID_PARAM"],
      [
        "the ID of a logged-in device",
        {
          ...(await dehydratedBody(alice.userId, alice.deviceId)),
        },
        400,
        "M_INVALID_PARAM",
      ],
      [
        "a display name too long",
        {
          ...good,
          initial_device_display_name: "n".repeat(600),
        },
        400,
        "M_BAD_JSON",
      ],
    ];
    const failures: string[] = [];
    for (const [name, body, status, errcode] of cases) {
      const before = await countEntries(server.kv);
      const res = await put(server, token, body);
      if (res.status !== status || res.body?.errcode !== errcode) {
        failures.push(`${name}: ${res.status} ${JSON.stringify(res.body)}`);
      }
      const after = await countEntries(server.kv);
      if (after !== before) failures.push(`${name}: wrote ${after - before} entries`);
    }
    assertEquals(failures, []);
    const got = await server.request("GET", `${MSC}/dehydrated_device`, { token });
    assertEquals(got.body.device_id, first);
    assert(await server.deps.accounts.getDevice(alice.userId, alice.deviceId));
  } finally {
    server.close();
  }
});

Deno.test("a new PUT replaces the previous device: its record, keys and inbox go, with a deleted update", async () => {
  const { server, alice, bob } = await setup();
  try {
    const token = alice.accessToken;
    const oldId = dehydratedId("OLD");
    assertEquals((await put(server, token, await dehydratedBody(alice.userId, oldId))).status, 200);
    await sendTo(server, bob.accessToken, "t1", alice.userId, oldId);
    // `*` reaches the dehydrated device too: it is one of alice's devices.
    await sendTo(server, bob.accessToken, "t2", alice.userId, "*");
    assertEquals(await inboxSize(server.kv, alice.userId, oldId), 2);

    const newId = dehydratedId("NEW");
    const res = await put(server, token, await dehydratedBody(alice.userId, newId));
    assertEquals([res.status, res.body], [200, { device_id: newId }]);

    assertEquals(await server.deps.accounts.getDevice(alice.userId, oldId), null);
    const devices = await server.request("GET", `${V3}/devices`, { token });
    const ids = devices.body.devices.map((d: JsonObject) => d.device_id).sort();
    assertEquals(ids, [alice.deviceId, newId].sort());
    assertEquals(await inboxSize(server.kv, alice.userId, oldId), 0);
    assertEquals((await server.kv.get(e2eeKeys.deviceKeys(alice.userId, oldId))).value, null);
    assertEquals(await server.deps.deviceKeys.oneTimeKeyCounts(alice.userId, oldId), { [ALG]: 0 });
    const query = await server.request("POST", `${V3}/keys/query`, {
      token: bob.accessToken,
      body: { device_keys: { [alice.userId]: [] } },
    });
    assertEquals(Object.keys(query.body.device_keys[alice.userId]).sort(), [newId]);
    const updates = await deviceListUpdatesAfter(server.kv, alice.userId);
    assertEquals(updates.filter((u) => u.deleted.includes(oldId)).length, 1);

    const stale = await server.request("GET", eventsPath(oldId), { token });
    assertEquals([stale.status, stale.body.errcode], [403, "M_FORBIDDEN"]);
    const fresh = await server.request("GET", eventsPath(newId), { token });
    assertEquals([fresh.status, fresh.body], [200, { events: [] }]);

    // Re-uploading under the same ID replaces it as well.
    const again = await put(server, token, await dehydratedBody(alice.userId, newId));
    assertEquals([again.status, again.body], [200, { device_id: newId }]);
    assertEquals(
      (await server.request("GET", `${MSC}/dehydrated_device`, { token })).body.device_id,
      newId,
    );
  } finally {
    server.close();
  }
});

Deno.test("DELETE, DELETE /devices/{id} and logout/all remove the dehydrated device and its data", async () => {
  const { server, alice, bob } = await setup();
  try {
    const token = alice.accessToken;
    const get = () => server.request("GET", `${MSC}/dehydrated_device`, { token });

    const a = dehydratedId("D1");
    assertEquals((await put(server, token, await dehydratedBody(alice.userId, a))).status, 200);
    await sendTo(server, bob.accessToken, "t1", alice.userId, a);
    const del = await server.request("DELETE", `${MSC}/dehydrated_device`, { token, body: {} });
    assertEquals([del.status, del.body], [200, { device_id: a }]);
    assertEquals((await get()).status, 404);
    assertEquals(await server.deps.accounts.getDevice(alice.userId, a), null);
    assertEquals(await inboxSize(server.kv, alice.userId, a), 0);
    assertEquals((await server.kv.get(e2eeKeys.deviceKeys(alice.userId, a))).value, null);
    assertEquals(
      (await deviceListUpdatesAfter(server.kv, alice.userId)).filter((u) => u.deleted.includes(a))
        .length,
      1,
    );

    // The ordinary device endpoints delete it too (with their user-interactive auth), and then
    // it is no longer the user's dehydrated device.
    const b = dehydratedId("D2");
    assertEquals((await put(server, token, await dehydratedBody(alice.userId, b))).status, 200);
    const auth = {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: "alice" },
      password: PASSWORD,
    };
    const viaDevices = await server.request("DELETE", `${V3}/devices/${encodeURIComponent(b)}`, {
      token,
      body: { auth },
    });
    assertEquals(viaDevices.status, 200);
    assertEquals((await get()).body.errcode, "M_NOT_FOUND");
    assertEquals((await server.kv.get(e2eeKeys.dehydratedDevice(alice.userId))).value, null);

    const c = dehydratedId("D3");
    assertEquals((await put(server, token, await dehydratedBody(alice.userId, c))).status, 200);
    assertEquals(
      (await server.request("POST", `${V3}/logout/all`, { token, body: {} })).status,
      200,
    );
    assertEquals((await server.kv.get(e2eeKeys.dehydratedDevice(alice.userId))).value, null);
    assertEquals(await server.deps.accounts.listDevices(alice.userId), []);
  } finally {
    server.close();
  }
});

Deno.test("the inbox pages by GET (next_batch only while more remain) and POST, and reading deletes nothing", async () => {
  const { server, alice, bob } = await setup();
  try {
    const token = alice.accessToken;
    const id = dehydratedId("EV");
    assertEquals((await put(server, token, await dehydratedBody(alice.userId, id))).status, 200);
    const total = 123;
    for (let i = 0; i < total; i++) {
      await sendTo(server, bob.accessToken, `t${i}`, alice.userId, id);
    }
    const ns = (events: JsonObject[]) => events.map((e) => (e.content as JsonObject).n);
    const range = (from: number, to: number) =>
      Array.from({ length: to - from }, (_, i) => from + i);

    // GET, as matrix-js-sdk 43 pages: default page of 100, then the rest without next_batch.
    const first = await server.request("GET", eventsPath(id), { token });
    assertEquals(first.status, 200);
    assertEquals(ns(first.body.events), range(0, 100));
    assertEquals(first.body.events[0], { type: "m.test", sender: bob.userId, content: { n: 0 } });
    assert(/^d[0-9a-f]{20}$/.test(first.body.next_batch), first.body.next_batch);
    const second = await server.request(
      "GET",
      `${eventsPath(id)}?from=${first.body.next_batch}`,
      { token },
    );
    assertEquals(ns(second.body.events), range(100, total));
    assertEquals("next_batch" in second.body, false);

    // Nothing was deleted: reading again from the start gives the same page (an interrupted
    // rehydration starts over, maybe on another device).
    assertEquals(await inboxSize(server.kv, alice.userId, id), total);
    const again = await server.request("GET", `${eventsPath(id)}?limit=7`, { token });
    assertEquals(ns(again.body.events), range(0, 7));

    // A page that ends exactly at the last message says so (no extra round trip needed).
    const exact = await server.request(
      "GET",
      `${eventsPath(id)}?from=${first.body.next_batch}&limit=${total - 100}`,
      { token },
    );
    assertEquals([exact.body.events.length, "next_batch" in exact.body], [total - 100, false]);

    // POST (the earlier draft): the token in the body, next_batch always; the page after the
    // last one is empty and keeps the token.
    const seen: unknown[] = [];
    let nextBatch: string | undefined;
    for (let round = 0; round < 10; round++) {
      const res = await server.request("POST", `${eventsPath(id)}?limit=50`, {
        token,
        body: nextBatch ? { next_batch: nextBatch } : {},
      });
      assertEquals(res.status, 200);
      assert(typeof res.body.next_batch === "string", JSON.stringify(res.body));
      if (res.body.events.length === 0) {
        assertEquals(res.body.next_batch, nextBatch);
        break;
      }
      seen.push(...ns(res.body.events));
      nextBatch = res.body.next_batch;
    }
    assertEquals(seen, range(0, total));
    assertEquals(await inboxSize(server.kv, alice.userId, id), total);

    // A message arriving after the last page is found from the last token.
    await sendTo(server, bob.accessToken, `t${total}`, alice.userId, id);
    const late = await server.request("POST", eventsPath(id), {
      token,
      body: { next_batch: nextBatch },
    });
    assertEquals(ns(late.body.events), [total]);

    // An empty inbox read by POST from the start still hands out a token.
    const other = dehydratedId("EMPTY");
    assertEquals((await put(server, token, await dehydratedBody(alice.userId, other))).status, 200);
    const empty = await server.request("POST", eventsPath(other), { token });
    assertEquals(empty.body.events, []);
    const fromEmpty = await server.request("POST", eventsPath(other), {
      token,
      body: { next_batch: empty.body.next_batch },
    });
    assertEquals([fromEmpty.status, fromEmpty.body.events], [200, []]);
  } finally {
    server.close();
  }
});

Deno.test("events: bad tokens and limits are 400, other device IDs and other users 403", async () => {
  const { server, alice, bob } = await setup();
  try {
    const token = alice.accessToken;
    const id = dehydratedId("OWN");
    assertEquals((await put(server, token, await dehydratedBody(alice.userId, id))).status, 200);
    const cases: [string, string, unknown, number, string][] = [
      ["GET", `${eventsPath(id)}?from=s123`, undefined, 400, "M_INVALID_PARAM"],
      ["GET", `${eventsPath(id)}?from=d${"0".repeat(19)}`, undefined, 400, "M_INVALID_PARAM"],
      ["GET", `${eventsPath(id)}?limit=-1`, undefined, 400, "M_INVALID_PARAM"],
      ["GET", `${eventsPath(id)}?limit=ten`, undefined, 400, "M_INVALID_PARAM"],
      ["POST", eventsPath(id), { next_batch: "nope" }, 400, "M_INVALID_PARAM"],
      ["POST", eventsPath(id), { next_batch: 5 }, 400, "M_BAD_JSON"],
      ["GET", eventsPath(alice.deviceId), undefined, 403, "M_FORBIDDEN"],
      ["POST", eventsPath("unknown"), {}, 403, "M_FORBIDDEN"],
    ];
    const failures: string[] = [];
    for (const [method, path, body, status, errcode] of cases) {
      const res = await server.request(method, path, { token, body });
      if (res.status !== status || res.body?.errcode !== errcode) {
        failures.push(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
      }
    }
    assertEquals(failures, []);
    // Bob cannot read alice's dehydrated device (he has none of his own).
    const theirs = await server.request("GET", eventsPath(id), { token: bob.accessToken });
    assertEquals([theirs.status, theirs.body.errcode], [403, "M_FORBIDDEN"]);
    // limit=0 is raised to one message, huge limits are cut to the page maximum.
    await sendTo(server, bob.accessToken, "t1", alice.userId, id);
    await sendTo(server, bob.accessToken, "t2", alice.userId, id);
    const one = await server.request("GET", `${eventsPath(id)}?limit=0`, { token });
    assertEquals([one.body.events.length, typeof one.body.next_batch], [1, "string"]);
    const all = await server.request("GET", `${eventsPath(id)}?limit=999999`, { token });
    assertEquals([all.body.events.length, "next_batch" in all.body], [2, false]);
  } finally {
    server.close();
  }
});

Deno.test("concurrent uploads leave exactly one dehydrated device and no keys of the others", async () => {
  const { server, alice } = await setup();
  try {
    const ids = Array.from({ length: 6 }, (_, i) => dehydratedId(`C${i}`));
    const bodies = await Promise.all(ids.map((id) => dehydratedBody(alice.userId, id)));
    const results = await Promise.all(bodies.map((b) => put(server, alice.accessToken, b)));
    assertEquals(results.map((r) => r.status), ids.map(() => 200));

    const current = await server.request("GET", `${MSC}/dehydrated_device`, {
      token: alice.accessToken,
    });
    const winner = current.body.device_id;
    assert(ids.includes(winner), winner);
    const devices = await server.deps.accounts.listDevices(alice.userId);
    assertEquals(devices.map((d) => d.deviceId).sort(), [alice.deviceId, winner].sort());
    const withKeys: string[] = [];
    for await (
      const entry of server.kv.list({ prefix: e2eeKeys.deviceKeysPrefix(alice.userId) })
    ) withKeys.push(entry.key.at(-1) as string);
    assertEquals(withKeys, [winner]);
    for (const id of ids.filter((id) => id !== winner)) {
      assertEquals(await server.deps.deviceKeys.oneTimeKeyCounts(alice.userId, id), { [ALG]: 0 });
    }
  } finally {
    server.close();
  }
});
