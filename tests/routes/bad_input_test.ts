/**
 * Bad input across every client endpoint that takes a JSON body: malformed JSON, a body of the
 * wrong type and an oversize body each get the right 4xx and errcode, and nothing is written
 * (the whole database is counted before and after). Invalid IDs in paths get a 4xx, never a 500.
 */
import { assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { registerUser } from "./client_harness.ts";
import { MAX_ROOM_KEYS_BODY_BYTES } from "../../routes/client/room_keys_routes.ts";
import { MAX_TO_DEVICE_BODY_BYTES } from "../../routes/client/to_device_routes.ts";

const V3 = "/_matrix/client/v3";

/**
 * Every JSON-body endpoint (below v3 unless the path starts with /_matrix/), with {user}, {room},
 * {event}, {alias} and {device} placeholders, and its body limit where it is not the default
 * (the oversize body is then made larger than that).
 */
const JSON_ENDPOINTS: [method: string, path: string, maxBodyBytes?: number][] = [
  ["POST", "/register"],
  ["POST", "/login"],
  ["POST", "/refresh"],
  ["POST", "/account/password"],
  ["POST", "/account/deactivate"],
  ["POST", "/delete_devices"],
  ["PUT", "/devices/{device}"],
  ["POST", "/createRoom"],
  ["POST", "/join/{room}"],
  ["POST", "/knock/{room}"],
  ["POST", "/rooms/{room}/join"],
  ["POST", "/rooms/{room}/invite"],
  ["POST", "/rooms/{room}/leave"],
  ["POST", "/rooms/{room}/kick"],
  ["POST", "/rooms/{room}/ban"],
  ["POST", "/rooms/{room}/unban"],
  ["POST", "/rooms/{room}/upgrade"],
  ["PUT", "/rooms/{room}/send/m.room.message/t1"],
  ["PUT", "/rooms/{room}/state/m.room.topic/"],
  ["PUT", "/rooms/{room}/redact/{event}/t2"],
  ["PUT", "/rooms/{room}/typing/{user}"],
  ["POST", "/rooms/{room}/receipt/m.read/{event}"],
  ["POST", "/rooms/{room}/read_markers"],
  ["PUT", "/directory/room/{alias}"],
  ["PUT", "/directory/list/room/{room}"],
  ["POST", "/publicRooms"],
  ["PUT", "/profile/{user}/displayname"],
  ["PUT", "/presence/{user}/status"],
  ["PUT", "/user/{user}/account_data/org.example.test"],
  ["PUT", "/user/{user}/rooms/{room}/account_data/org.example.test"],
  ["PUT", "/user/{user}/rooms/{room}/tags/u.work"],
  ["POST", "/user/{user}/filter"],
  ["POST", "/user_directory/search"],
  ["PUT", "/pushrules/global/override/my.rule"],
  ["PUT", "/pushrules/global/override/my.rule/actions"],
  ["PUT", "/pushrules/global/override/my.rule/enabled"],
  ["PUT", "/sendToDevice/m.test/t3", MAX_TO_DEVICE_BODY_BYTES],
  ["POST", "/keys/device_signing/upload"],
  ["POST", "/keys/signatures/upload"],
  ["POST", "/keys/query"],
  ["POST", "/keys/upload"],
  ["POST", "/keys/upload/{device}"],
  ["POST", "/keys/claim"],
  ["POST", "/room_keys/version"],
  ["PUT", "/room_keys/version/1"],
  ["PUT", "/room_keys/keys?version=1", MAX_ROOM_KEYS_BODY_BYTES],
  ["PUT", "/room_keys/keys/{room}?version=1", MAX_ROOM_KEYS_BODY_BYTES],
  ["PUT", "/room_keys/keys/{room}/session1?version=1"],
  ["PUT", "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"],
  ["POST", "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/{device}/events"],
  ["POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"],
  ["POST", "/_matrix/client/v4/sync"],
];

async function countEntries(kv: Deno.Kv): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix: [] })) n++;
  return n;
}

async function setup() {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  const alice = await registerUser(server, "alice");
  const created = await server.request("POST", `${V3}/createRoom`, {
    token: alice.accessToken,
    body: { preset: "public_chat" },
  });
  const roomId: string = created.body.room_id;
  const sent = await server.request(
    "PUT",
    `${V3}/rooms/${encodeURIComponent(roomId)}/send/m.room.message/setup`,
    { token: alice.accessToken, body: { msgtype: "m.text", body: "hi" } },
  );
  // Paths under /_matrix/ (unstable endpoints) are taken as they are, others are below v3.
  const fill = (path: string, ids: { room: string; user: string; event: string }) =>
    (path.startsWith("/_matrix/") ? "" : V3) + path
      .replace("{user}", encodeURIComponent(ids.user))
      .replace("{room}", encodeURIComponent(ids.room))
      .replace("{event}", encodeURIComponent(ids.event))
      .replace("{alias}", encodeURIComponent("#bad-input:example.org:8448"))
      .replace("{device}", encodeURIComponent(alice.deviceId));
  const ids = { room: roomId, user: alice.userId, event: sent.body.event_id as string };
  return { server, alice, ids, fill };
}

const BAD_BODIES: { name: string; body: string; status: number; errcodes: string[] }[] = [
  { name: "malformed JSON", body: '{"msgtype": "m.text", ', status: 400, errcodes: ["M_NOT_JSON"] },
  {
    name: "a body of the wrong type",
    body: "[1, 2, 3]",
    status: 400,
    errcodes: ["M_BAD_JSON", "M_NOT_JSON"],
  },
  {
    name: "an oversize body",
    body: JSON.stringify({ pad: "x".repeat(1_100_000) }),
    status: 413,
    errcodes: ["M_TOO_LARGE"],
  },
];

for (const bad of BAD_BODIES) {
  Deno.test(`every JSON endpoint refuses ${bad.name} and writes nothing`, async () => {
    const { server, alice, ids, fill } = await setup();
    try {
      const failures: string[] = [];
      for (const [method, template, maxBodyBytes] of JSON_ENDPOINTS) {
        const before = await countEntries(server.kv);
        const body = bad.status === 413 && maxBodyBytes !== undefined
          ? JSON.stringify({ pad: "x".repeat(maxBodyBytes + 1) })
          : bad.body;
        const res = await server.request(method, fill(template, ids), {
          token: alice.accessToken,
          body,
        });
        const after = await countEntries(server.kv);
        if (res.status !== bad.status || !bad.errcodes.includes(res.body?.errcode)) {
          failures.push(`${method} ${template}: ${res.status} ${res.body?.errcode}`);
        }
        if (after !== before) {
          failures.push(`${method} ${template}: wrote ${after - before} entries`);
        }
      }
      assertEquals(failures, []);
    } finally {
      server.close();
    }
  });
}

Deno.test("invalid IDs in paths get a Matrix 4xx, never a 500, and write nothing", async () => {
  const { server, alice, fill } = await setup();
  try {
    const badIds = { room: "not-a-room-id", user: "not a user", event: "no-sigil" };
    const failures: string[] = [];
    for (const [method, template] of JSON_ENDPOINTS) {
      if (!/\{(room|user|event)\}/.test(template)) continue;
      const before = await countEntries(server.kv);
      const res = await server.request(method, fill(template, badIds), {
        token: alice.accessToken,
        body: {},
      });
      const after = await countEntries(server.kv);
      const ok = res.status >= 400 && res.status < 500 && typeof res.body?.errcode === "string";
      if (!ok) failures.push(`${method} ${template}: ${res.status} ${JSON.stringify(res.body)}`);
      if (after !== before) failures.push(`${method} ${template}: wrote ${after - before} entries`);
    }
    assertEquals(failures, []);
  } finally {
    server.close();
  }
});

Deno.test("over-long path parameters and ID queries on every route get a Matrix 4xx, never a 500, and write nothing", async () => {
  // A value past KV's 2 KiB key limit: IDs, types and names that reach a KV key must be refused
  // (or found unknown) before the read, not fail inside it. One parameter at a time is long,
  // the others valid, so an earlier check of another parameter cannot hide the failure.
  const { server, alice, ids } = await setup();
  try {
    const long = "x".repeat(3000);
    const valid: Record<string, string> = {
      userId: alice.userId,
      roomId: ids.room,
      roomIdOrAlias: ids.room,
      eventId: ids.event,
      deviceId: alice.deviceId,
    };
    const failures: string[] = [];
    const seen = new Set<string>();
    for (const route of server.app.routes) {
      if (route.method === "ALL" || route.method === "OPTIONS") continue;
      const params = [...route.path.matchAll(/:([A-Za-z]+)/g)].map((m) => m[1]);
      for (const param of params) {
        const path = route.path.replace(
          /:([A-Za-z]+)/g,
          (_, name: string) =>
            name === param ? long : encodeURIComponent(valid[name] ?? "org.example.x"),
        );
        if (seen.has(`${route.method} ${path}`)) continue;
        seen.add(`${route.method} ${path}`);
        const before = await countEntries(server.kv);
        const res = await server.request(route.method, path, {
          token: alice.accessToken,
          body: route.method === "GET" ? undefined : {},
        });
        const after = await countEntries(server.kv);
        const where = `${route.method} ${route.path} (long ${param})`;
        // Browser pages (the OAuth sign-in pages, the SSO redirects) answer with an HTML error
        // page instead of a Matrix error: a person is looking at them.
        const page = (res.headers.get("content-type") ?? "").startsWith("text/html") &&
          res.status >= 400;
        if (res.status >= 500 || (typeof res.body?.errcode !== "string" && !page)) {
          failures.push(`${where}: ${res.status} ${JSON.stringify(res.body)}`);
        }
        if (after !== before) failures.push(`${where}: wrote ${after - before}`);
      }
    }
    for (const query of ["filter", "since", "from", "to", "at", "version"]) {
      for (const path of ["/sync", "/notifications", "/publicRooms", "/room_keys/keys"]) {
        const res = await server.request("GET", `${V3}${path}?timeout=0&${query}=${long}`, {
          token: alice.accessToken,
        });
        if (res.status >= 500) failures.push(`GET ${path}?${query}=: ${res.status}`);
      }
    }
    assertEquals(failures, []);
  } finally {
    server.close();
  }
});
