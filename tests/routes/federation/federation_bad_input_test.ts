/**
 * Bad input on every Server-Server and key route: the routes of the app under
 * `/_matrix/federation/` and `/_matrix/key/` are walked (as tests/routes/bad_input_test.ts does
 * for the client API) with requests validly X-Matrix-signed by b.test, whose user is joined to
 * a.test's room, so each reaches its route's own checks. Over-long and invalid path parameters,
 * bad query values, non-object bodies, fields of the wrong JSON type, huge arrays, deep nesting,
 * malformed and oversize bodies must each get a Matrix 4xx (never a 500), and a.test's KV must
 * hold exactly what it held before.
 */
import { assertEquals } from "../../assert.ts";
import { type NetworkServer, startNetwork } from "../../federation/in_process_network.ts";
import { signRequest } from "../../../domain/federation/request_auth.ts";
import type { JsonValue } from "../../../domain/protocol/json.ts";
import { MAX_FEDERATION_BODY_BYTES } from "../../../routes/federation/server_auth.ts";

const A = "a.test";
const B = "b.test";
const V3 = "/_matrix/client/v3";
const LONG = "x".repeat(3000);

/** Every entry of a KV store, serialised, to compare before and after a request. */
async function snapshot(kv: Deno.Kv): Promise<string[]> {
  const entries: string[] = [];
  for await (const e of kv.list({ prefix: [] })) {
    entries.push(`${JSON.stringify(e.key)} ${e.versionstamp}`);
  }
  return entries;
}

/** A request from b.test to a.test, X-Matrix-signed over the parsed body when there is one. */
async function signedRequest(
  a: NetworkServer,
  b: NetworkServer,
  method: string,
  path: string,
  body?: Body,
): Promise<{ status: number; body: Record<string, unknown> | null }> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  // A raw body (malformed or oversize) cannot be signed: the signature then covers no content,
  // and the server must refuse the body before it gets to the signature.
  const content = body !== undefined && "json" in body ? { content: body.json } : {};
  headers.authorization = await signRequest(
    { method, uri: path, origin: B, destination: A, ...content },
    b.deps.keyring.current,
  );
  const res = await a.app.request(path, {
    method,
    headers,
    ...(body !== undefined ? { body: "json" in body ? JSON.stringify(body.json) : body.raw } : {}),
  });
  const text = await res.text();
  let parsed: Record<string, unknown> | null = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = null;
  }
  return { status: res.status, body: parsed };
}

/** Nest `inner` `depth` levels deep in arrays, without recursion. */
function nested(depth: number, inner: JsonValue = 1): JsonValue {
  let value = inner;
  for (let i = 0; i < depth; i++) value = [value];
  return value;
}

type Body = { json: JsonValue } | { raw: string };

/**
 * Bad bodies for every PUT and POST route. A `strict` one must be refused (a Matrix 4xx); the
 * others carry the fields of every route at once, so a route that ignores the offending ones
 * (publicRooms, get_missing_events' optional lists, an empty transaction beside them) may take
 * them: those must never get a 5xx, and write nothing when refused.
 */
function badBodies(eventId: string): [name: string, body: Body, strict: boolean][] {
  const many = (item: JsonValue) => Array.from({ length: 20_000 }, () => item);
  const wrongTypes: JsonValue = {
    // The fields of every body of the Server-Server and key APIs, each of a wrong type.
    origin: 5,
    origin_server_ts: "now",
    pdus: "none",
    edus: { a: 1 },
    type: 5,
    room_id: ["!r:a.test"],
    sender: { user: 1 },
    state_key: 7,
    content: "text",
    depth: "deep",
    prev_events: "x",
    auth_events: { x: 1 },
    hashes: [1],
    signatures: "sig",
    event: "an event",
    room_version: 10,
    invite_room_state: { a: 1 },
    earliest_events: "x",
    latest_events: 5,
    limit: "ten",
    min_depth: "0",
    since: 5,
    filter: "all",
    include_all_networks: "yes",
    third_party_instance_id: 5,
    server_keys: ["b.test"],
    medium: 5,
    address: [],
    mxid: {},
    invites: "x",
  };
  return [
    ["an array body", { json: [1, 2, 3] }, true],
    ["a string body", { json: "body" }, true],
    ["a number body", { json: 42 }, true],
    ["a null body", { json: null }, true],
    ["a boolean body", { json: true }, true],
    ["fields of the wrong JSON type", { json: wrongTypes }, true],
    ["IDs of the wrong shape", {
      json: {
        type: "m.room.member",
        room_id: "not-a-room",
        sender: "not a user",
        state_key: "@no-colon",
        event_id: "no-sigil",
        content: { membership: "join" },
        prev_events: ["nope"],
        auth_events: ["nope"],
        depth: -1,
        earliest_events: ["nope"],
        latest_events: ["nope", eventId],
        server_keys: { "not a server!": { "ed25519:x": {} } },
        room_version: "x".repeat(300),
        event: { room_id: "nope", sender: "nope", type: "m.room.member" },
      },
    }, false],
    ["huge arrays", {
      json: {
        origin: B,
        origin_server_ts: 1,
        pdus: many({}),
        edus: many({}),
        prev_events: many(eventId),
        auth_events: many(eventId),
        earliest_events: many(eventId),
        latest_events: many(eventId),
        invite_room_state: many({}),
        event: { prev_events: many(eventId), auth_events: many(eventId) },
        server_keys: Object.fromEntries(
          Array.from({ length: 2_000 }, (_, i) => [`s${i}.example`, {}]),
        ),
      },
    }, false],
    ["long strings where IDs go", {
      json: {
        pdus: [],
        room_id: `!${LONG}:a.test`,
        sender: `@${LONG}:b.test`,
        state_key: `@${LONG}:b.test`,
        event: { room_id: `!${LONG}:a.test`, sender: `@${LONG}:b.test` },
        room_version: LONG,
        latest_events: [`$${LONG}`],
        server_keys: { [`${LONG}.example`]: { [`ed25519:${LONG}`]: {} }, [B]: { [LONG]: {} } },
        since: LONG,
        filter: { generic_search_term: LONG, room_types: [LONG] },
      },
    }, false],
    // Too deep to sign (canonical JSON stops at 512 levels): refused before the signature.
    ["deep nesting", { raw: JSON.stringify({ pdus: [], content: nested(10_000) }) }, true],
    ["nesting just under the depth limit", {
      json: { content: nested(120), event: { content: nested(120) }, pdus: [nested(120)] },
    }, false],
    ["malformed JSON", { raw: '{"pdus": [' }, true],
    ["an oversize body", {
      raw: JSON.stringify({ pad: "x".repeat(MAX_FEDERATION_BODY_BYTES) }),
    }, true],
  ];
}

/** Invalid values for each path parameter (beside an over-long one). */
const BAD_IDS = ["not-an-id", "@no-colon", "!:", "$", "a b:c", "%00", "\u{1F600}"];

/** Path parameters any string of bounded length is valid for. */
const FREE_FORM = new Set(["txnId", "keyId"]);

/** The query parameters each GET route takes, with valid values; the room's IDs fill in later. */
const QUERIES: Record<string, Record<string, string>> = {
  "/_matrix/federation/v1/make_join/:roomId/:userId": { ver: "10" },
  "/_matrix/federation/v1/make_leave/:roomId/:userId": { ver: "10" },
  "/_matrix/federation/v1/make_knock/:roomId/:userId": { ver: "10" },
  "/_matrix/federation/v1/state/:roomId": { event_id: "{event}" },
  "/_matrix/federation/v1/state_ids/:roomId": { event_id: "{event}" },
  "/_matrix/federation/v1/backfill/:roomId": { v: "{event}", limit: "10" },
  "/_matrix/federation/v1/timestamp_to_event/:roomId": { ts: "1", dir: "f" },
  "/_matrix/federation/v1/query/directory": { room_alias: "#room:a.test" },
  "/_matrix/federation/v1/query/profile": { user_id: "@alice:a.test", field: "displayname" },
  "/_matrix/federation/v1/publicRooms": { limit: "10", include_all_networks: "false" },
  "/_matrix/federation/v1/hierarchy/:roomId": { suggested_only: "false" },
  "/_matrix/key/v2/query/:serverName": { minimum_valid_until_ts: "1" },
  "/_matrix/key/v2/query/:serverName/:keyId": { minimum_valid_until_ts: "1" },
  "/_matrix/federation/v1/openid/userinfo": { access_token: "abc" },
};
/** Bad values for any query parameter. */
const BAD_QUERY_VALUES = [LONG, "not-an-id", "-1", "", "1e400", "99999999999999999999"];

async function setup() {
  const net = await startNetwork([A, B], { env: { TESSERA_FEDERATION_ALLOW_PRIVATE: "true" } });
  const a = net.servers[A];
  const b = net.servers[B];
  const alice = await a.register("alice");
  const bob = await b.register("bob");
  const created = await a.request("POST", `${V3}/createRoom`, {
    token: alice.accessToken,
    body: { preset: "public_chat", room_alias_name: "room" },
  });
  assertEquals(created.status, 200, JSON.stringify(created.body));
  const roomId: string = created.body.room_id;
  const sent = await a.request(
    "PUT",
    `${V3}/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t1`,
    { token: alice.accessToken, body: { msgtype: "m.text", body: "hello" } },
  );
  assertEquals(sent.status, 200, JSON.stringify(sent.body));
  const joined = await b.request(
    "POST",
    `${V3}/join/${encodeURIComponent(roomId)}?server_name=${A}`,
    { token: bob.accessToken, body: {} },
  );
  assertEquals(joined.status, 200, JSON.stringify(joined.body));
  // a.test learns b.test's key with a first valid request (that write is not the test's).
  const warm = await signedRequest(
    a,
    b,
    "GET",
    `/_matrix/federation/v1/event/${sent.body.event_id}`,
  );
  assertEquals(warm.status, 200, JSON.stringify(warm.body));
  const valid: Record<string, string> = {
    roomId,
    userId: bob.userId,
    eventId: sent.body.event_id,
    serverName: B,
    keyId: b.deps.keyring.current.keyId,
    txnId: "txn1",
  };
  return { net, a, b, valid, eventId: sent.body.event_id as string };
}

/** The signed federation and key routes of a.test's app, once each. */
function federationRoutes(a: NetworkServer): { method: string; path: string }[] {
  const seen = new Set<string>();
  const routes: { method: string; path: string }[] = [];
  for (const route of a.app.routes) {
    if (route.method === "ALL" || route.method === "OPTIONS") continue;
    if (!/^\/_matrix\/(federation|key)\//.test(route.path)) continue;
    if (seen.has(`${route.method} ${route.path}`)) continue;
    seen.add(`${route.method} ${route.path}`);
    routes.push({ method: route.method, path: route.path });
  }
  return routes;
}

function fill(template: string, values: Record<string, string>): string {
  return template.replace(/:([A-Za-z]+)/g, (_, name: string) => encodeURIComponent(values[name]));
}

function query(values: Record<string, string>, eventId: string): string {
  const entries = Object.entries(values);
  if (entries.length === 0) return "";
  return "?" +
    entries.map(([k, v]) => `${k}=${encodeURIComponent(v.replace("{event}", eventId))}`).join("&");
}

/** Send `cases` one by one; a failure is any answer but a Matrix 4xx, or any change to KV. */
async function expectRefused(
  a: NetworkServer,
  b: NetworkServer,
  cases: { where: string; method: string; path: string; body?: Body; mayAccept?: boolean }[],
): Promise<string[]> {
  const failures: string[] = [];
  for (const c of cases) {
    const before = await snapshot(a.kv);
    const res = await signedRequest(a, b, c.method, c.path, c.body);
    const after = await snapshot(a.kv);
    if (c.mayAccept && res.status < 400) continue;
    if (res.status < 400 || res.status >= 500 || typeof res.body?.errcode !== "string") {
      failures.push(`${c.where}: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
    }
    const written = after.filter((e) => !before.includes(e));
    if (written.length > 0 || after.length !== before.length) {
      failures.push(`${c.where}: changed KV ${written.slice(0, 3).join(", ").slice(0, 200)}`);
    }
  }
  return failures;
}

Deno.test("federation bad input: over-long and invalid path parameters on every route get a Matrix 4xx and write nothing", async () => {
  const { net, a, b, valid, eventId } = await setup();
  try {
    const cases = [];
    for (const route of federationRoutes(a)) {
      const params = [...route.path.matchAll(/:([A-Za-z]+)/g)].map((m) => m[1]);
      for (const param of params) {
        for (const bad of [LONG, ...BAD_IDS]) {
          // Free-form parameters, only bounded in length: a transaction ID, the key ID of the
          // old /server/{keyId} form (ignored, as the spec always said) and of a notary query
          // (an unknown one is answered with no keys). "not-an-id" is a valid server name.
          if (FREE_FORM.has(param) && bad !== LONG) continue;
          if (param === "serverName" && bad === "not-an-id") continue;
          const path = fill(route.path, { ...valid, [param]: bad }) +
            query(QUERIES[route.path] ?? {}, eventId);
          cases.push({
            where: `${route.method} ${route.path} (${param}=${bad.slice(0, 12)})`,
            method: route.method,
            path,
            ...(route.method === "GET" ? {} : { body: { json: {} } }),
          });
        }
      }
    }
    assertEquals(await expectRefused(a, b, cases), []);
  } finally {
    await net.close();
  }
});

Deno.test("federation bad input: bad query values on every route get a Matrix 4xx and write nothing", async () => {
  const { net, a, b, valid, eventId } = await setup();
  try {
    const cases = [];
    for (const route of federationRoutes(a)) {
      if (route.method !== "GET") continue;
      const queries = QUERIES[route.path] ?? {};
      for (const name of Object.keys(queries)) {
        for (const bad of BAD_QUERY_VALUES) {
          // Free-form values: an unknown alias or profile field, any room version string.
          if (name === "field" && bad !== LONG) continue;
          if (name === "ver" && bad !== LONG) continue;
          if (name === "access_token" && bad !== LONG && bad !== "") continue;
          cases.push({
            where: `GET ${route.path} (${name}=${bad.slice(0, 12)})`,
            method: "GET",
            path: fill(route.path, valid) + query({ ...queries, [name]: bad }, eventId),
          });
        }
      }
    }
    assertEquals(await expectRefused(a, b, cases), []);
  } finally {
    await net.close();
  }
});

Deno.test("federation bad input: bad bodies on every PUT and POST route get a Matrix 4xx and write nothing", async () => {
  const { net, a, b, valid, eventId } = await setup();
  try {
    const cases = [];
    for (const route of federationRoutes(a)) {
      if (route.method !== "PUT" && route.method !== "POST") continue;
      for (const [name, body, strict] of badBodies(eventId)) {
        cases.push({
          where: `${route.method} ${route.path} (${name})`,
          method: route.method,
          path: fill(route.path, valid),
          body,
          mayAccept: !strict,
        });
      }
    }
    assertEquals(await expectRefused(a, b, cases), []);
  } finally {
    await net.close();
  }
});
