/**
 * `GET /initialSync` and `GET /rooms/{roomId}/initialSync`: rooms with membership, visibility,
 * messages (oldest first, `start` pages back with /messages, `end` streams on with /events),
 * state, account data with tags first, receipts and presence; invites with the invite event;
 * departed rooms as the user left them; non-members only into `world_readable` rooms.
 */
import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;
// deno-lint-ignore no-explicit-any
type Ev = Record<string, any>;

const V3 = "/_matrix/client/v3";
const roomPath = (roomId: string) => `${V3}/rooms/${encodeURIComponent(roomId)}`;

async function createRoom(server: Server, token: string, body: JsonObject = {}) {
  const res = await server.request("POST", `${V3}/createRoom`, { token, body });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

async function say(server: Server, token: string, roomId: string, body: string) {
  const res = await server.request("PUT", `${roomPath(roomId)}/send/m.room.message/${body}`, {
    token,
    body: { msgtype: "m.text", body },
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

const WORLD_READABLE = {
  type: "m.room.history_visibility",
  state_key: "",
  content: { history_visibility: "world_readable" },
};

Deno.test("GET /initialSync lists joined and invited rooms with messages, state and account data", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await createRoom(server, alice.accessToken, {
      preset: "public_chat",
      visibility: "public",
      name: "Lounge",
    });
    const texts: string[] = [];
    for (const body of ["one", "two", "three"]) {
      texts.push(await say(server, alice.accessToken, roomId, body));
    }
    const user = encodeURIComponent(alice.userId);
    const room = encodeURIComponent(roomId);
    for (
      const [path, body] of [
        [`${V3}/user/${user}/account_data/my.type`, { cats: 1 }],
        [`${V3}/user/${user}/rooms/${room}/account_data/my.room.type`, { dogs: 2 }],
        [`${V3}/user/${user}/rooms/${room}/tags/u.work`, { order: 1 }],
      ] as const
    ) {
      assertEquals(
        (await server.request("PUT", path, { token: alice.accessToken, body })).status,
        200,
      );
    }
    const receipt = await server.request(
      "POST",
      `${roomPath(roomId)}/receipt/m.read/${encodeURIComponent(texts[2])}`,
      { token: alice.accessToken, body: {} },
    );
    assertEquals(receipt.status, 200);
    const invited = await createRoom(server, bob.accessToken, { invite: [alice.userId] });

    const res = await server.request("GET", `${V3}/initialSync?limit=2`, {
      token: alice.accessToken,
    });
    assertEquals(res.status, 200);
    assert(/^s[0-9a-f]{20}$/.test(res.body.end));
    const joined = res.body.rooms.find((r: Ev) => r.room_id === roomId);
    assertEquals(joined.membership, "join");
    assertEquals(joined.visibility, "public");
    assertEquals(joined.messages.chunk.map((e: Ev) => e.event_id), texts.slice(1));
    assertEquals(joined.messages.end, res.body.end);
    assert(joined.state.some((e: Ev) => e.type === "m.room.name" && e.content.name === "Lounge"));
    // The legacy format: user_id beside sender, as Synapse serves these endpoints.
    for (const e of [...joined.state, ...joined.messages.chunk]) assertEquals(e.user_id, e.sender);
    assertEquals(joined.account_data.map((e: Ev) => e.type), ["m.tag", "my.room.type"]);
    assertEquals(joined.account_data[0].content, { tags: { "u.work": { order: 1 } } });
    assertEquals(res.body.account_data.filter((e: Ev) => e.type === "my.type"), [
      { type: "my.type", content: { cats: 1 } },
    ]);
    const receipts = res.body.receipts.find((e: Ev) => e.room_id === roomId);
    assert(receipts.content[texts[2]]["m.read"][alice.userId]);
    assert(Array.isArray(res.body.presence));

    // `start` pages back with /messages from where the chunk begins.
    const older = await server.request(
      "GET",
      `${roomPath(roomId)}/messages?dir=b&limit=1&from=${
        encodeURIComponent(joined.messages.start)
      }`,
      { token: alice.accessToken },
    );
    assertEquals(older.body.chunk.map((e: Ev) => e.event_id), [texts[0]]);

    const none = await server.request("GET", `${V3}/initialSync?limit=0`, {
      token: alice.accessToken,
    });
    assertEquals(none.body.rooms.find((r: Ev) => r.room_id === roomId).messages.chunk, []);
    const noneInRoom = await server.request("GET", `${roomPath(roomId)}/initialSync?limit=0`, {
      token: alice.accessToken,
    });
    assertEquals(noneInRoom.body.messages.chunk, []);

    const invite = res.body.rooms.find((r: Ev) => r.room_id === invited);
    assertEquals(invite.membership, "invite");
    assertEquals(invite.inviter, bob.userId);
    assertEquals(invite.invite.type, "m.room.member");
    assertEquals(invite.invite.content.membership, "invite");
    assertEquals(invite.messages, undefined);

    // `end` is a stream token: /events from it shows what comes next.
    const next = await say(server, alice.accessToken, roomId, "four");
    const stream = await server.request("GET", `${V3}/events?timeout=0&from=${res.body.end}`, {
      token: alice.accessToken,
    });
    assertEquals(
      stream.body.chunk.filter((e: Ev) => e.type === "m.room.message").map((e: Ev) => e.event_id),
      [next],
    );
  } finally {
    server.close();
  }
});

Deno.test("departed rooms: with archived, and by room, as the user left them", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await createRoom(server, alice.accessToken, { preset: "public_chat" });
    await server.request("POST", `${roomPath(roomId)}/join`, { token: bob.accessToken, body: {} });
    const before = await say(server, alice.accessToken, roomId, "before");
    await server.request("PUT", `${roomPath(roomId)}/state/m.room.topic`, {
      token: alice.accessToken,
      body: { topic: "old" },
    });
    const left = await server.request("POST", `${roomPath(roomId)}/leave`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(left.status, 200);
    await say(server, alice.accessToken, roomId, "after");
    await server.request("PUT", `${roomPath(roomId)}/state/m.room.topic`, {
      token: alice.accessToken,
      body: { topic: "new" },
    });

    const plain = await server.request("GET", `${V3}/initialSync`, { token: bob.accessToken });
    assertEquals(plain.body.rooms.find((r: Ev) => r.room_id === roomId), undefined);

    const all = await server.request("GET", `${V3}/initialSync?archived=true&limit=3`, {
      token: bob.accessToken,
    });
    const fromAll = all.body.rooms.find((r: Ev) => r.room_id === roomId);
    const one = await server.request("GET", `${roomPath(roomId)}/initialSync?limit=3`, {
      token: bob.accessToken,
    });
    assertEquals(one.status, 200);
    for (const room of [fromAll, one.body]) {
      assertEquals(room.membership, "leave");
      const chunk = room.messages.chunk;
      assert(chunk.some((e: Ev) => e.event_id === before));
      assertEquals(chunk.at(-1).type, "m.room.member");
      assertEquals(chunk.at(-1).state_key, bob.userId);
      assert(!chunk.some((e: Ev) => e.content.body === "after"));
      const topic = room.state.find((e: Ev) => e.type === "m.room.topic");
      assertEquals(topic.content.topic, "old");
    }
    assertEquals(one.body.presence, []);
    assertEquals(one.body.receipts, []);
  } finally {
    server.close();
  }
});

Deno.test("GET /rooms/{roomId}/initialSync: members see the room, non-members only world_readable ones", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const eve = await registerUser(server, "eve");
    const closed = await createRoom(server, alice.accessToken, { preset: "public_chat" });
    await say(server, alice.accessToken, closed, "private");
    const refused = await server.request("GET", `${roomPath(closed)}/initialSync`, {
      token: eve.accessToken,
    });
    assertEquals(refused.status, 403);
    const unknown = await server.request("GET", `${roomPath("!nowhere:localhost")}/initialSync`, {
      token: eve.accessToken,
    });
    assertEquals(unknown.status, 403);

    const bob = await registerUser(server, "bob");
    const joined = await server.request("POST", `${roomPath(closed)}/join`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(joined.status, 200);
    const status = await server.request(
      "PUT",
      `${V3}/presence/${encodeURIComponent(alice.userId)}/status`,
      { token: alice.accessToken, body: { presence: "online" } },
    );
    assertEquals(status.status, 200);
    const member = await server.request("GET", `${roomPath(closed)}/initialSync`, {
      token: alice.accessToken,
    });
    assertEquals(member.status, 200);
    assertEquals(member.body.membership, "join");
    assert(member.body.messages.chunk.some((e: Ev) => e.content.body === "private"));
    const presence = new Map(member.body.presence.map((e: Ev) => [e.content.user_id, e.content]));
    assertEquals((presence.get(alice.userId) as Ev)?.presence, "online");
    // A member who never set presence is shown offline, as Synapse shows every joined member.
    assertEquals((presence.get(bob.userId) as Ev)?.presence, "offline");

    // Shown to a peeker: what was sent once the room became world_readable, and its state.
    await server.request("PUT", `${roomPath(closed)}/state/m.room.history_visibility`, {
      token: alice.accessToken,
      body: WORLD_READABLE.content,
    });
    await say(server, alice.accessToken, closed, "public");
    const peek = await server.request("GET", `${roomPath(closed)}/initialSync`, {
      token: eve.accessToken,
    });
    assertEquals(peek.status, 200);
    assertEquals(peek.body.room_id, closed);
    assertEquals(peek.body.membership, undefined);
    assertEquals(peek.body.messages.chunk.map((e: Ev) => [e.type, e.content.body]), [
      ["m.room.history_visibility", undefined],
      ["m.room.message", "public"],
    ]);
    assert(peek.body.state.some((e: Ev) => e.type === "m.room.create"));
    assertEquals(peek.body.account_data, []);
    // Its end is a /events token for peeking on.
    const next = await say(server, alice.accessToken, closed, "more");
    const stream = await server.request(
      "GET",
      `${V3}/events?timeout=0&room_id=${encodeURIComponent(closed)}&from=${peek.body.messages.end}`,
      { token: eve.accessToken },
    );
    assertEquals(stream.status, 200);
    assert(stream.body.chunk.some((e: Ev) => e.event_id === next));
  } finally {
    server.close();
  }
});

Deno.test("GET /initialSync leaves out invites from ignored users", async () => {
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
    const rooms: Record<string, string> = {};
    for (const inviter of [alice, mallory]) {
      const roomId = await createRoom(server, inviter.accessToken, { invite: [bob.userId] });
      rooms[inviter.userId] = roomId;
    }
    const res = await server.request("GET", `${V3}/initialSync`, { token: bob.accessToken });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    const invited = (res.body.rooms as Ev[]).map((r) => r.room_id);
    assertEquals(invited, [rooms[alice.userId]]);
  } finally {
    server.close();
  }
});
