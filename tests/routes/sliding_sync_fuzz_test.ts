/**
 * Sliding sync bodies and queries off the happy path: mistyped, out of range, inherited
 * property names (`__proto__`, `constructor`) as list names, room IDs and conn IDs, malformed
 * positions and extension settings. Each is answered 200 or a Matrix 4xx, never a 5xx, and a
 * refused one leaves no connection record behind.
 */
import { assert } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
const LIST = { ranges: [[0, 5]], required_state: [["*", "*"]], timeline_limit: 3 };

const BODIES: unknown[] = [
  [],
  "x",
  1,
  null,
  { lists: [] },
  { lists: { a: null } },
  { lists: { a: { ranges: [[0.5, 1]] } } },
  { lists: { a: { ranges: [[5, 1]] } } },
  { lists: { a: { ranges: [[0]] } } },
  { lists: { a: { ranges: "x" } } },
  { lists: { a: { required_state: [["a"]] } } },
  { lists: { a: { required_state: [[1, 2]] } } },
  { lists: { a: { timeline_limit: -1 } } },
  { lists: { a: { timeline_limit: 1e12 } } },
  { lists: { a: { filters: { spaces: "x" } } } },
  { lists: { a: { filters: { room_types: [1] } } } },
  { lists: JSON.parse('{"__proto__": {"ranges": [[0, 5]]}}') },
  { lists: { constructor: LIST, toString: LIST, hasOwnProperty: LIST } },
  { room_subscriptions: { "!a": null } },
  { room_subscriptions: JSON.parse('{"__proto__": {"timeline_limit": 1}}') },
  { room_subscriptions: { constructor: { timeline_limit: 1 } } },
  { unsubscribe_rooms: [1] },
  { unsubscribe_rooms: ["__proto__", "constructor"] },
  { conn_id: "" },
  { conn_id: "é" },
  { conn_id: "__proto__", lists: { a: LIST } },
  { timeout: -1 },
  { timeout: 1e20 },
  { timeout: "5" },
  { pos: 5 },
  { pos: "" },
  { pos: "garbage" },
  { pos: "0_0_0" },
  { pos: "ffffffffffff_99999999999999999999_zz" },
  { extensions: null },
  { extensions: [] },
  { extensions: { to_device: { enabled: true, since: "x" } } },
  { extensions: { to_device: { enabled: true, limit: -1 } } },
  { extensions: { to_device: { enabled: true, limit: 1e15 } } },
  { extensions: { receipts: { enabled: true, lists: [1] } } },
  { extensions: { typing: { enabled: "yes" } } },
  {
    extensions: {
      account_data: {
        enabled: true,
        rooms: ["*", "__proto__"],
        lists: ["__proto__", "constructor"],
      },
    },
  },
  { extensions: { unknown_ext: { enabled: true } } },
  { set_presence: "weird" },
  {
    lists: {
      a: {
        ranges: [[0, 1e9]],
        required_state: [["m.room.member", "$LAZY"], ["*", "$ME"], ["$ME", "*"]],
      },
    },
  },
];
const QUERIES = ["", "?timeout=0", "?pos=__proto__", "?timeout=abc", `?pos=${"x".repeat(5000)}`];

Deno.test("sliding sync fuzz: odd bodies and queries answer 200 or a Matrix 4xx, and a refusal writes nothing", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    await server.request("POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: { preset: "public_chat" },
    });
    for (const body of BODIES) {
      for (const query of QUERIES) {
        const what = `${query.slice(0, 40)} ${JSON.stringify(body)}`;
        const before = await Array.fromAsync(server.kv.list({ prefix: ["slidingconn_head"] }));
        const res = await server.request("POST", `${PATH}${query}`, {
          token: alice.accessToken,
          body: body as never,
        });
        assert(
          res.status === 200 || (res.status >= 400 && res.status < 500),
          `${res.status} ${what}`,
        );
        if (res.status === 200) continue;
        assert(typeof res.body?.errcode === "string", `${res.status} ${what}`);
        const after = await Array.fromAsync(server.kv.list({ prefix: ["slidingconn_head"] }));
        assert(
          JSON.stringify(after.map((e) => [e.key, e.versionstamp])) ===
            JSON.stringify(before.map((e) => [e.key, e.versionstamp])),
          `a refused request wrote a connection: ${what}`,
        );
      }
    }
  } finally {
    await server.close();
  }
});
