/**
 * Sliding sync's extensions over HTTP, fed through the ordinary endpoints: account data
 * (global and per room), read receipts, typing, the e2ee counts and device lists, and their
 * `lists`/`rooms` scoping, on a first answer and on the next one.
 */
import { assert, assertEquals } from "../assert.ts";
import {
  createPublicRoom,
  FAST_HASHING,
  joinRoom,
  loginUser,
  registerUser,
  sendText,
} from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

const PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
const LIST = { ranges: [[0, 9]], required_state: [], timeline_limit: 5 };
const ALL = {
  to_device: { enabled: true },
  e2ee: { enabled: true },
  account_data: { enabled: true },
  receipts: { enabled: true },
  typing: { enabled: true },
};

function slidingSync(server: Server, token: string, body: JsonObject, pos?: string) {
  const query = pos === undefined ? "" : `?pos=${encodeURIComponent(pos)}`;
  return server.request("POST", `${PATH}${query}`, { token, body });
}

function room(roomId: string, rest: string) {
  return `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/${rest}`;
}

Deno.test("sliding sync extensions over HTTP: account data, receipts, typing and e2ee, first and next", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob", "bob's password");
    const roomId = await createPublicRoom(server, alice);
    await joinRoom(server, bob, roomId);
    const said = await sendText(server, bob, roomId, "hi alice");
    assertEquals(said.status, 200);
    const eventId = said.body.event_id as string;

    const put = async (user: typeof alice, path: string, body: JsonObject) => {
      const res = await server.request("PUT", path, { token: user.accessToken, body });
      assertEquals(res.status, 200, `${path}: ${JSON.stringify(res.body)}`);
    };
    const user = `/_matrix/client/v3/user/${encodeURIComponent(alice.userId)}`;
    await put(alice, `${user}/account_data/org.example.global`, { a: 1 });
    await put(
      alice,
      `${user}/rooms/${encodeURIComponent(roomId)}/account_data/org.example.room`,
      { b: 1 },
    );
    const receipt = await server.request("POST", room(roomId, `receipt/m.read/${eventId}`), {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(receipt.status, 200);
    await put(bob, room(roomId, `typing/${encodeURIComponent(bob.userId)}`), {
      typing: true,
      timeout: 30_000,
    });

    const body = { lists: { all: LIST }, extensions: ALL };
    const first = await slidingSync(server, alice.accessToken, body);
    assertEquals(first.status, 200, JSON.stringify(first.body));
    const ext = first.body.extensions;
    assertEquals(
      (ext.account_data.global as JsonObject[]).map((e) => e.type).sort(),
      ["m.push_rules", "org.example.global"],
    );
    assertEquals(ext.account_data.rooms[roomId], [{ type: "org.example.room", content: { b: 1 } }]);
    assertEquals(ext.receipts.rooms[roomId].type, "m.receipt");
    assertEquals(Object.keys(ext.receipts.rooms[roomId].content[eventId]["m.read"]), [bob.userId]);
    assertEquals(ext.typing.rooms[roomId], {
      type: "m.typing",
      content: { user_ids: [bob.userId] },
    });
    assertEquals(ext.to_device.events, []);
    assert(typeof ext.to_device.next_batch === "string");
    // A new connection: counts, but no device-list delta (the client fetches every list).
    assertEquals(ext.e2ee.device_one_time_keys_count, { signed_curve25519: 0 });
    assertEquals(ext.e2ee.device_unused_fallback_key_types, []);
    assertEquals(ext.e2ee.device_lists, undefined);

    // Meanwhile: bob stops typing, logs in a second device, alice changes her account data.
    await put(bob, room(roomId, `typing/${encodeURIComponent(bob.userId)}`), { typing: false });
    await loginUser(server, "bob", "bob's password");
    await put(alice, `${user}/account_data/org.example.global`, { a: 2 });
    const next = await slidingSync(server, alice.accessToken, body, first.body.pos);
    assertEquals(next.status, 200, JSON.stringify(next.body));
    const news = next.body.extensions;
    assertEquals(news.account_data, {
      global: [{ type: "org.example.global", content: { a: 2 } }],
      rooms: {},
    });
    assertEquals(news.receipts, { rooms: {} });
    assertEquals(news.typing.rooms[roomId].content, { user_ids: [] });
    assertEquals(news.e2ee.device_lists, { changed: [bob.userId], left: [] });
  } finally {
    server.close();
  }
});

Deno.test("sliding sync extensions over HTTP: lists and rooms scope the per-room ones; absent ones are not answered", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const listed = await createPublicRoom(server, alice);
    const subscribed = await createPublicRoom(server, alice);
    const user = `/_matrix/client/v3/user/${encodeURIComponent(alice.userId)}`;
    for (const roomId of [listed, subscribed]) {
      const res = await server.request(
        "PUT",
        `${user}/rooms/${encodeURIComponent(roomId)}/account_data/m.tag`,
        { token: alice.accessToken, body: { tags: { "m.favourite": {} } } },
      );
      assertEquals(res.status, 200);
    }
    // The list's one slot holds the newest room (`subscribed`); the subscription names the
    // older one (`listed`). (Named for the extension's scope: `lists` picks the first.)
    const ask = (scope: JsonObject) =>
      slidingSync(server, alice.accessToken, {
        lists: { newest: { ranges: [[0, 0]], required_state: [], timeline_limit: 1 } },
        room_subscriptions: { [listed]: { required_state: [], timeline_limit: 1 } },
        extensions: { account_data: { enabled: true, ...scope } },
      });
    const roomsOf = async (scope: JsonObject) => {
      const res = await ask(scope);
      assertEquals(res.status, 200, JSON.stringify(res.body));
      assertEquals(Object.keys(res.body.extensions), ["account_data"]);
      return Object.keys(res.body.extensions.account_data.rooms).sort();
    };
    assertEquals(await roomsOf({}), [listed, subscribed].sort());
    assertEquals(await roomsOf({ lists: ["newest"], rooms: [] }), [subscribed]);
    assertEquals(await roomsOf({ lists: [], rooms: [listed] }), [listed]);
    assertEquals(await roomsOf({ lists: ["other"], rooms: [] }), []);

    const bad = await slidingSync(server, alice.accessToken, {
      extensions: { to_device: { enabled: true, since: "not a token" } },
    });
    assertEquals(bad.status, 400);
  } finally {
    server.close();
  }
});
