/**
 * `GET /events` (the legacy event stream) and `GET /events/{eventId}`: a forward stream on the
 * sync tokens, page by page with `limit`, the user's own leave and nothing after it, typing,
 * receipts, presence and account data beside room events, and peeking with `room_id` into a
 * `world_readable` room (403 for any other room a user is not in).
 */
import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;
// deno-lint-ignore no-explicit-any
type Ev = Record<string, any>;

const V3 = "/_matrix/client/v3";

async function createRoom(server: Server, token: string, body: JsonObject = {}) {
  const res = await server.request("POST", `${V3}/createRoom`, { token, body });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

const roomPath = (roomId: string) => `${V3}/rooms/${encodeURIComponent(roomId)}`;

async function say(server: Server, token: string, roomId: string, body: string, txn = body) {
  const res = await server.request("PUT", `${roomPath(roomId)}/send/m.room.message/${txn}`, {
    token,
    body: { msgtype: "m.text", body },
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

async function events(server: Server, token: string, query: Record<string, string>) {
  const qs = new URLSearchParams({ timeout: "0", ...query }).toString();
  return await server.request("GET", `${V3}/events?${qs}`, { token });
}

Deno.test("GET /events without from answers at once with an empty chunk and a sync token", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const roomId = await createRoom(server, alice.accessToken);
    await say(server, alice.accessToken, roomId, "before");
    const res = await events(server, alice.accessToken, {});
    assertEquals(res.status, 200);
    assert(/^s[0-9a-f]{20}$/.test(res.body.end), res.body.end);
    assertEquals(res.body.start, res.body.end);
    assertEquals(res.body.chunk, []);
    // The token also works as a /sync since: both run on the same clock.
    const sync = await server.request("GET", `${V3}/sync?since=${res.body.end}`, {
      token: alice.accessToken,
    });
    assertEquals(sync.status, 200);
  } finally {
    server.close();
  }
});

Deno.test("GET /events streams new events in order, with room_id, page by page with limit", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const roomId = await createRoom(server, alice.accessToken);
    const first = await events(server, alice.accessToken, {});
    const sent: string[] = [];
    for (let i = 0; i < 7; i++) sent.push(await say(server, alice.accessToken, roomId, `m${i}`));
    let from = first.body.end as string;
    const seen: string[] = [];
    for (let page = 0; page < 10 && seen.length < sent.length; page++) {
      const res = await events(server, alice.accessToken, { from, limit: "3" });
      assertEquals(res.status, 200);
      assertEquals(res.body.start, from);
      const messages = res.body.chunk.filter((e: Ev) => e.type === "m.room.message");
      assert(messages.length <= 3, "a page holds at most limit room events");
      for (const e of messages) {
        assertEquals(e.room_id, roomId);
        assertEquals(e.user_id, alice.userId);
        seen.push(e.event_id);
      }
      from = res.body.end;
    }
    assertEquals(seen, sent);
    // Caught up: the next page is empty, and its token is no older.
    const after = await events(server, alice.accessToken, { from });
    assertEquals(after.body.chunk, []);
    assert(after.body.end >= from);
  } finally {
    server.close();
  }
});

Deno.test("GET /events catches up from an old token when a room has more events than a page reads", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const roomId = await createRoom(server, alice.accessToken);
    const first = await events(server, alice.accessToken, {});
    const sent: string[] = [];
    // Sent on the server's sender: 130 client sends would meet the rate limit.
    for (let i = 0; i < 130; i++) {
      const { eventId } = await server.deps.sender.send({
        roomId,
        sender: alice.userId,
        type: "m.room.message",
        content: { msgtype: "m.text", body: `m${i}` },
      });
      sent.push(eventId);
    }
    // More than limit + the per-room slack: the oldest events must come first.
    const res = await events(server, alice.accessToken, { from: first.body.end, limit: "5" });
    const ids = res.body.chunk.map((e: Ev) => e.event_id);
    assertEquals(ids, sent.slice(0, 5));
    const next = await events(server, alice.accessToken, { from: res.body.end, limit: "5" });
    assertEquals(next.body.chunk.map((e: Ev) => e.event_id), sent.slice(5, 10));
  } finally {
    server.close();
  }
});

Deno.test("GET /events long-polls until an event arrives", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const roomId = await createRoom(server, alice.accessToken);
    const first = await events(server, alice.accessToken, {});
    const waiting = events(server, alice.accessToken, { from: first.body.end, timeout: "20000" });
    const eventId = await say(server, alice.accessToken, roomId, "wake up");
    const res = await waiting;
    assertEquals(res.status, 200);
    assert(res.body.chunk.some((e: Ev) => e.event_id === eventId));
  } finally {
    server.close();
  }
});

Deno.test("GET /events shows the user's own leave and nothing the room does after it", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await createRoom(server, alice.accessToken, { preset: "public_chat" });
    const join = await server.request("POST", `${roomPath(roomId)}/join`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(join.status, 200);
    const first = await events(server, bob.accessToken, {});
    const seenBefore = await say(server, alice.accessToken, roomId, "while bob is here");
    const left = await server.request("POST", `${roomPath(roomId)}/leave`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(left.status, 200);
    const hidden = await say(server, alice.accessToken, roomId, "after bob left");
    const res = await events(server, bob.accessToken, { from: first.body.end });
    const ids = res.body.chunk.map((e: Ev) => e.event_id);
    assert(ids.includes(seenBefore));
    const leave = res.body.chunk.find((e: Ev) =>
      e.type === "m.room.member" && e.state_key === bob.userId
    );
    assertEquals(leave?.content.membership, "leave");
    assert(!ids.includes(hidden), "events after the leave are not streamed");
  } finally {
    server.close();
  }
});

Deno.test("GET /events carries typing, receipts, presence and account data", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const roomId = await createRoom(server, alice.accessToken);
    const eventId = await say(server, alice.accessToken, roomId, "hello");
    const first = await events(server, alice.accessToken, {});
    const token = alice.accessToken;
    const user = encodeURIComponent(alice.userId);
    const calls = [
      server.request("PUT", `${roomPath(roomId)}/typing/${user}`, {
        token,
        body: { typing: true, timeout: 30000 },
      }),
      server.request("POST", `${roomPath(roomId)}/receipt/m.read/${encodeURIComponent(eventId)}`, {
        token,
        body: {},
      }),
      server.request("PUT", `${V3}/user/${user}/account_data/my.type`, {
        token,
        body: { cats: 1 },
      }),
      server.request(
        "PUT",
        `${V3}/user/${user}/rooms/${encodeURIComponent(roomId)}/tags/u.work`,
        { token, body: { order: 0.5 } },
      ),
      server.request("PUT", `${V3}/presence/${user}/status`, {
        token,
        body: { presence: "online", status_msg: "here" },
      }),
    ];
    for (const res of await Promise.all(calls)) assertEquals(res.status, 200);
    const res = await events(server, token, { from: first.body.end });
    const byType = (type: string) => res.body.chunk.find((e: Ev) => e.type === type);
    assertEquals(byType("m.typing")?.room_id, roomId);
    assertEquals(byType("m.typing")?.content.user_ids, [alice.userId]);
    assertEquals(byType("m.receipt")?.room_id, roomId);
    assert(byType("m.receipt")?.content[eventId]["m.read"][alice.userId]);
    assertEquals(byType("my.type")?.content, { cats: 1 });
    assertEquals(byType("my.type")?.room_id, undefined);
    assertEquals(byType("m.tag")?.room_id, roomId);
    assertEquals(byType("m.tag")?.content.tags, { "u.work": { order: 0.5 } });
    const presence = res.body.chunk.find((e: Ev) =>
      e.type === "m.presence" && e.content.status_msg === "here"
    );
    assertEquals(presence?.content.user_id, alice.userId);
  } finally {
    server.close();
  }
});

Deno.test("GET /events?room_id peeks into a world_readable room, and refuses other rooms", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const eve = await registerUser(server, "eve");
    const open = await createRoom(server, alice.accessToken, {
      preset: "public_chat",
      initial_state: [{
        type: "m.room.history_visibility",
        state_key: "",
        content: { history_visibility: "world_readable" },
      }],
    });
    const shared = await createRoom(server, alice.accessToken, { preset: "public_chat" });
    const refused = await events(server, eve.accessToken, { room_id: shared });
    assertEquals(refused.status, 403);
    assertEquals(refused.body.errcode, "M_FORBIDDEN");
    const unknown = await events(server, eve.accessToken, { room_id: "!nowhere:localhost" });
    assertEquals(unknown.status, 403);
    const bad = await events(server, eve.accessToken, { room_id: "not a room" });
    assertEquals(bad.status, 400);

    const first = await events(server, eve.accessToken, { room_id: open });
    assertEquals(first.status, 200);
    const eventId = await say(server, alice.accessToken, open, "public words");
    await say(server, alice.accessToken, shared, "private words");
    const res = await events(server, eve.accessToken, { room_id: open, from: first.body.end });
    const messages = res.body.chunk.filter((e: Ev) => e.type === "m.room.message");
    assertEquals(messages.map((e: Ev) => e.event_id), [eventId]);
    // Without room_id, eve's own stream holds nothing of either room.
    const own = await events(server, eve.accessToken, { from: first.body.end });
    assertEquals(own.body.chunk.filter((e: Ev) => e.type === "m.room.message"), []);
  } finally {
    server.close();
  }
});

Deno.test("GET /events hides what the pipeline hides: ignored users and redacted content", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await createRoom(server, alice.accessToken, { preset: "public_chat" });
    await server.request("POST", `${roomPath(roomId)}/join`, { token: bob.accessToken, body: {} });
    const ignore = await server.request(
      "PUT",
      `${V3}/user/${encodeURIComponent(alice.userId)}/account_data/m.ignored_user_list`,
      { token: alice.accessToken, body: { ignored_users: { [bob.userId]: {} } } },
    );
    assertEquals(ignore.status, 200);
    const first = await events(server, alice.accessToken, {});
    const fromBob = await say(server, bob.accessToken, roomId, "ignored");
    const mine = await say(server, alice.accessToken, roomId, "secret");
    const redact = await server.request(
      "PUT",
      `${roomPath(roomId)}/redact/${encodeURIComponent(mine)}/r1`,
      { token: alice.accessToken, body: {} },
    );
    assertEquals(redact.status, 200);
    const res = await events(server, alice.accessToken, { from: first.body.end });
    const ids = res.body.chunk.map((e: Ev) => e.event_id);
    assert(!ids.includes(fromBob), "an ignored user's message is not streamed");
    const redacted = res.body.chunk.find((e: Ev) => e.event_id === mine);
    assertEquals(redacted?.content, {});
  } finally {
    server.close();
  }
});

Deno.test("GET /events rejects a malformed from token or timeout with 400", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const queries: Record<string, string>[] = [{ from: "t12" }, { from: "nonsense" }, {
      timeout: "-1",
    }];
    for (const query of queries) {
      const res = await events(server, alice.accessToken, query);
      assertEquals(res.status, 400, JSON.stringify(query));
    }
  } finally {
    server.close();
  }
});

Deno.test("GET /events/{eventId} returns a visible event and 404 for others", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const eve = await registerUser(server, "eve");
    const roomId = await createRoom(server, alice.accessToken);
    const eventId = await say(server, alice.accessToken, roomId, "hello");
    const path = `${V3}/events/${encodeURIComponent(eventId)}`;
    const res = await server.request("GET", path, { token: alice.accessToken });
    assertEquals(res.status, 200);
    assertEquals(res.body.event_id, eventId);
    assertEquals(res.body.room_id, roomId);
    assertEquals(res.body.content.body, "hello");
    const outsider = await server.request("GET", path, { token: eve.accessToken });
    assertEquals(outsider.status, 404);
    const missing = await server.request(
      "GET",
      `${V3}/events/${encodeURIComponent("$" + "A".repeat(43))}`,
      {
        token: alice.accessToken,
      },
    );
    assertEquals(missing.status, 404);
  } finally {
    server.close();
  }
});

Deno.test("GET /events leaves out invites from ignored users", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const mallory = await registerUser(server, "mallory");
    const bob = await registerUser(server, "bob");
    const ignore = await server.request(
      "PUT",
      `${V3}/user/${encodeURIComponent(bob.userId)}/account_data/m.ignored_user_list`,
      { token: bob.accessToken, body: { ignored_users: { [mallory.userId]: {} } } },
    );
    assertEquals(ignore.status, 200, JSON.stringify(ignore.body));
    const from = (await events(server, bob.accessToken, {})).body.end as string;
    const rooms: Record<string, string> = {};
    for (const inviter of [alice, mallory]) {
      rooms[inviter.userId] = await createRoom(server, inviter.accessToken, {
        invite: [bob.userId],
      });
    }
    const res = await events(server, bob.accessToken, { from });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    const invites = (res.body.chunk as Ev[]).filter((e) =>
      e.type === "m.room.member" && e.state_key === bob.userId
    );
    assertEquals(invites.map((e) => e.room_id), [rooms[alice.userId]]);
  } finally {
    server.close();
  }
});
