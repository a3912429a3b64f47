import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

const V3 = "/_matrix/client/v3";
type Server = Awaited<ReturnType<typeof startTestServer>>;

function pusherBody(pushkey: string, url: string, extra: JsonObject = {}): JsonObject {
  return {
    kind: "http",
    app_id: "org.example.app",
    app_display_name: "Example",
    device_display_name: "Phone",
    profile_tag: "tag",
    pushkey,
    lang: "en",
    data: { url, ...(extra.data as JsonObject ?? {}) },
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== "data")),
  };
}

const GATEWAY = "https://push.example.org/_matrix/push/v1/notify";

Deno.test("pushers: set, list, replace, append across users, delete by kind null", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const set = (token: string, body: JsonObject) =>
      server.request("POST", `${V3}/pushers/set`, { token, body });
    const list = async (token: string) =>
      (await server.request("GET", `${V3}/pushers`, { token })).body.pushers;

    assertEquals(await list(alice.accessToken), []);
    assertEquals((await set(alice.accessToken, pusherBody("k1", GATEWAY))).status, 200);
    const [one] = await list(alice.accessToken);
    assertEquals(one, {
      pushkey: "k1",
      kind: "http",
      app_id: "org.example.app",
      app_display_name: "Example",
      device_display_name: "Phone",
      profile_tag: "tag",
      lang: "en",
      data: { url: GATEWAY },
    });
    // The same app and pushkey replaces; another pushkey adds.
    await set(alice.accessToken, pusherBody("k1", GATEWAY, { lang: "fr" }));
    await set(alice.accessToken, pusherBody("k2", GATEWAY));
    assertEquals(
      (await list(alice.accessToken)).map((p: JsonObject) => [p.pushkey, p.lang]),
      [["k1", "fr"], ["k2", "en"]],
    );
    // Bob taking k1 with append keeps Alice's; without append, hers goes.
    await set(bob.accessToken, pusherBody("k1", GATEWAY, { append: true }));
    assertEquals((await list(alice.accessToken)).length, 2);
    await set(bob.accessToken, pusherBody("k1", GATEWAY));
    assertEquals((await list(alice.accessToken)).map((p: JsonObject) => p.pushkey), ["k2"]);
    assertEquals((await list(bob.accessToken)).map((p: JsonObject) => p.pushkey), ["k1"]);
    // kind: null deletes.
    const del = await set(alice.accessToken, {
      kind: null,
      app_id: "org.example.app",
      pushkey: "k2",
    });
    assertEquals(del.status, 200);
    assertEquals(await list(alice.accessToken), []);

    const bad = async (body: JsonObject, errcode: string) => {
      const r = await set(alice.accessToken, body);
      assertEquals([r.status, r.body.errcode], [400, errcode], JSON.stringify(body));
    };
    await bad(pusherBody("k", "https://push.example.org/other/path"), "M_INVALID_PARAM");
    await bad(pusherBody("k", "not a url"), "M_INVALID_PARAM");
    await bad({ kind: "http", app_id: "a", pushkey: "k" }, "M_MISSING_PARAM");
    await bad({ ...pusherBody("k", GATEWAY), app_id: "x".repeat(65) }, "M_BAD_JSON");
    await bad({ ...pusherBody("k", GATEWAY), pushkey: "x".repeat(513) }, "M_BAD_JSON");
    assertEquals(await list(alice.accessToken), []);
    assertEquals((await server.request("GET", `${V3}/pushers`)).status, 401);
  } finally {
    server.close();
  }
});

Deno.test("pushers: a device's pushers go when it logs out; other devices' stay", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice", "correct horse");
    const login = await server.request("POST", `${V3}/login`, {
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: "alice" },
        password: "correct horse",
      },
    });
    assertEquals(login.status, 200);
    const setFrom = (token: string, pushkey: string) =>
      server.request("POST", `${V3}/pushers/set`, { token, body: pusherBody(pushkey, GATEWAY) });
    await setFrom(alice.accessToken, "first");
    await setFrom(login.body.access_token, "second");
    const keys = async () => (await server.deps.pushers.list(alice.userId)).map((p) => p.pushkey);
    assertEquals(await keys(), ["first", "second"]);
    const out = await server.request("POST", `${V3}/logout`, { token: login.body.access_token });
    assertEquals(out.status, 200);
    assertEquals(await keys(), ["first"]);
  } finally {
    server.close();
  }
});

/** A push gateway on loopback recording what it is sent; `answer` decides each response. */
function startGateway(answer: (body: JsonObject) => Response = () => Response.json({})) {
  const received: JsonObject[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const body = await req.json();
    received.push(body);
    return answer(body);
  });
  const url = `http://127.0.0.1:${server.addr.port}/_matrix/push/v1/notify`;
  return { received, url, stop: () => server.shutdown() };
}

/** A room with alice and bob joined, built through the real sender. */
async function room(server: Server, alice: string, bob: string) {
  const { sender } = server.deps;
  const { roomId } = await sender.createRoom({ version: "12", creator: alice });
  const state = (s: string, type: string, content: JsonObject, key = "") =>
    sender.send({ roomId, sender: s, type, stateKey: key, content });
  await state(alice, "m.room.member", { membership: "join" }, alice);
  await state(alice, "m.room.power_levels", { users: {} });
  await state(alice, "m.room.join_rules", { join_rule: "public" });
  await state(bob, "m.room.member", { membership: "join" }, bob);
  const send = async (s: string, content: JsonObject, type = "m.room.message") =>
    (await sender.send({ roomId, sender: s, type, content })).eventId;
  return { roomId, send, state };
}

Deno.test("push delivery: notifications reach the gateway through the outbox", async () => {
  const gateway = startGateway();
  const server = await startTestServer({ TESSERA_OUTBOUND_ALLOW_PRIVATE: "on" });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const r = await room(server, alice.userId, bob.userId);
    await r.state(
      bob.userId,
      "m.room.member",
      { membership: "join", displayname: "Bob" },
      bob.userId,
    );
    await r.state(alice.userId, "m.room.name", { name: "Tea" });
    await server.request("POST", `${V3}/pushers/set`, {
      token: alice.accessToken,
      body: pusherBody("key-a", gateway.url, { data: { extra: "x" } }),
    });
    const eventId = await r.send(bob.userId, { msgtype: "m.text", body: "hello" });
    await server.deps.pushSender.runOnce();
    assertEquals(gateway.received.length, 1);
    const n = gateway.received[0].notification as JsonObject;
    assertEquals(n.event_id, eventId);
    assertEquals(n.id, eventId);
    assertEquals(n.room_id, r.roomId);
    assertEquals(n.type, "m.room.message");
    assertEquals(n.sender, bob.userId);
    assertEquals(n.sender_display_name, "Bob");
    assertEquals(n.room_name, "Tea");
    assertEquals(n.content, { msgtype: "m.text", body: "hello" });
    assertEquals(n.counts, { unread: 1 });
    assertEquals(n.prio, "high");
    const [device] = n.devices as JsonObject[];
    assertEquals(device.app_id, "org.example.app");
    assertEquals(device.pushkey, "key-a");
    assertEquals(device.data, { extra: "x" });
    assertEquals(device.tweaks, { sound: "default" });
    assertEquals(typeof device.pushkey_ts, "number");
    // Delivered once: another pass sends nothing.
    await server.deps.pushSender.runOnce();
    assertEquals(gateway.received.length, 1);

    // A read receipt sends a badge update with the new count.
    const receipt = await server.request(
      "POST",
      `${V3}/rooms/${encodeURIComponent(r.roomId)}/receipt/m.read/${encodeURIComponent(eventId)}`,
      { token: alice.accessToken, body: {} },
    );
    assertEquals(receipt.status, 200);
    // The badge is queued after the receipt's answer (a receipt never waits for pushers), so
    // passes run until it has arrived, within a deadline.
    const deadline = Date.now() + 5_000;
    while (gateway.received.length < 2 && Date.now() < deadline) {
      await server.deps.pushSender.runOnce();
      if (gateway.received.length < 2) await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals(gateway.received.length, 2);
    const badge = gateway.received[1].notification as JsonObject;
    assertEquals([badge.type, badge.counts], [null, { unread: 0 }]);

    // A muted room is not pushed.
    await server.request(
      "PUT",
      `${V3}/pushrules/global/room/${encodeURIComponent(r.roomId)}`,
      { token: alice.accessToken, body: { actions: ["dont_notify"] } },
    );
    await r.send(bob.userId, { msgtype: "m.text", body: "muted" });
    await server.deps.pushSender.runOnce();
    assertEquals(gateway.received.length, 2);
    await server.request(
      "DELETE",
      `${V3}/pushrules/global/room/${encodeURIComponent(r.roomId)}`,
      { token: alice.accessToken },
    );

    // event_id_only sends IDs and counts, no content.
    await server.request("POST", `${V3}/pushers/set`, {
      token: alice.accessToken,
      body: pusherBody("key-a", gateway.url, { data: { format: "event_id_only" } }),
    });
    const second = await r.send(bob.userId, { msgtype: "m.text", body: "secret" });
    await server.deps.pushSender.runOnce();
    assertEquals(gateway.received.length, 3);
    const slim = gateway.received[2].notification as JsonObject;
    assertEquals(slim.event_id, second);
    assertEquals([slim.content, slim.type, slim.sender], [undefined, undefined, undefined]);
    assertEquals((slim.devices as JsonObject[])[0].data, { format: "event_id_only" });
  } finally {
    server.close();
    await gateway.stop();
  }
});

Deno.test("push delivery: failures are retried after a backoff; rejected pushkeys lose their pusher", async () => {
  let failNext = 1;
  let reject = false;
  const gateway = startGateway(() => {
    if (failNext > 0) {
      failNext--;
      return new Response("down", { status: 503 });
    }
    return Response.json(reject ? { rejected: ["key-a"] } : {});
  });
  let clock = Date.now();
  const server = await startTestServer({ TESSERA_OUTBOUND_ALLOW_PRIVATE: "on" }, {
    now: () => clock,
  });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const r = await room(server, alice.userId, bob.userId);
    await server.request("POST", `${V3}/pushers/set`, {
      token: alice.accessToken,
      body: pusherBody("key-a", gateway.url),
    });
    const eventId = await r.send(bob.userId, { msgtype: "m.text", body: "one" });
    await server.deps.pushSender.runOnce();
    assertEquals(gateway.received.length, 1);
    // Backing off: a pass now sends nothing.
    await server.deps.pushSender.runOnce();
    assertEquals(gateway.received.length, 1);
    clock += 60_000;
    await server.deps.pushSender.runOnce();
    assertEquals(gateway.received.length, 2);
    assertEquals((gateway.received[1].notification as JsonObject).event_id, eventId);

    reject = true;
    await r.send(bob.userId, { msgtype: "m.text", body: "two" });
    await server.deps.pushSender.runOnce();
    assertEquals(gateway.received.length, 3);
    assertEquals(await server.deps.pushers.list(alice.userId), []);
  } finally {
    server.close();
    await gateway.stop();
  }
});

Deno.test("push delivery: a gateway on a private address is refused unless allowed", async () => {
  const gateway = startGateway();
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const r = await room(server, alice.userId, bob.userId);
    await server.request("POST", `${V3}/pushers/set`, {
      token: alice.accessToken,
      body: pusherBody("key-a", gateway.url),
    });
    await r.send(bob.userId, { msgtype: "m.text", body: "hello" });
    await server.deps.pushSender.runOnce();
    assertEquals(gateway.received.length, 0);
    // The refused entry was given up, not left to retry forever.
    await server.deps.pushSender.runOnce();
    assert(gateway.received.length === 0);
  } finally {
    server.close();
    await gateway.stop();
  }
});
