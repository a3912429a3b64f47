/**
 * Sync's timelines and state sections: the limit counts what the pipeline lets through, a room
 * joined in the window shows its history, state sections carry what the client did not see,
 * lazy-loaded members are not repeated, and summaries omit heroes of named rooms.
 */
import { assert, assertEquals } from "../assert.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import { member, publicRoom } from "./sender_rooms.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

function send(server: Server, roomId: string, userId: string, type: string, content: JsonObject) {
  return server.deps.sender.send({ roomId, sender: userId, type, content });
}

function setState(
  server: Server,
  roomId: string,
  userId: string,
  type: string,
  key: string,
  content: JsonObject,
) {
  return server.deps.sender.send({ roomId, sender: userId, type, stateKey: key, content });
}

async function sync(server: Server, token: string, params: Record<string, string> = {}) {
  const query = new URLSearchParams(params).toString();
  const res = await server.request("GET", `/_matrix/client/v3/sync?${query}`, { token });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

const members = (events: JsonObject[]) =>
  events.filter((e) => e.type === "m.room.member").map((e) =>
    `${e.state_key}:${(e.content as JsonObject).membership}`
  )
    .sort();

Deno.test("a filtered timeline reaches its limit, walking past events the filter drops", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const roomId = await publicRoom(server, alice.userId);
    const wanted = await send(server, roomId, alice.userId, "m.room.message", { body: "one" });
    for (let i = 0; i < 25; i++) {
      await send(server, roomId, alice.userId, "a.filler", { i });
    }
    const filter = JSON.stringify({ room: { timeline: { types: ["m.room.message"], limit: 1 } } });
    const body = await sync(server, alice.accessToken, { filter });
    const timeline = body.rooms.join[roomId].timeline;
    assertEquals(timeline.events.map((e: JsonObject) => e.event_id), [wanted.eventId]);

    // A filter that matches nothing leaves the timeline empty and the state whole.
    const none = JSON.stringify({
      room: {
        timeline: { types: ["no.such.type"], limit: 1 },
        state: { types: ["m.room.join_rules"] },
      },
    });
    const empty = (await sync(server, alice.accessToken, { filter: none })).rooms.join[roomId];
    assertEquals(empty.timeline.events, []);
    assertEquals(empty.state.events.map((e: JsonObject) => e.type), ["m.room.join_rules"]);

    // limit 0: no timeline, the state as a whole.
    const zero = JSON.stringify({
      room: { timeline: { limit: 0 }, state: { types: ["m.room.member"] } },
    });
    const room = (await sync(server, alice.accessToken, { filter: zero })).rooms.join[roomId];
    assertEquals(room.timeline.events, []);
    assertEquals(members(room.state.events), [`${alice.userId}:join`]);
  } finally {
    await server.close();
  }
});

Deno.test("a room joined in an incremental sync shows its history, limited, and its state", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await publicRoom(server, alice.userId);
    for (let i = 0; i < 12; i++) {
      await send(server, roomId, alice.userId, "m.room.message", { body: `early ${i}` });
    }
    await member(server, roomId, bob.userId, "invite", alice.userId);
    const first = await sync(server, bob.accessToken);
    assert(first.rooms.invite[roomId]);
    // Sent while Bob was only invited: Element found it missing after he accepted.
    const whileInvited = await send(server, roomId, alice.userId, "m.room.message", {
      body: "while invited",
    });
    const join = await member(server, roomId, bob.userId, "join");
    const body = await sync(server, bob.accessToken, { since: first.next_batch });
    const room = body.rooms.join[roomId];
    const ids = room.timeline.events.map((e: JsonObject) => e.event_id);
    assertEquals(ids.length, 10);
    assertEquals(ids.slice(-2), [whileInvited.eventId, join.eventId]);
    assertEquals(room.timeline.limited, true, "more history precedes the timeline");
    // The join says what it replaced and who sent that: matrix-js-sdk finds the inviter so.
    const joinEvent = room.timeline.events.at(-1) as JsonObject;
    assertEquals((joinEvent.unsigned as JsonObject).prev_content, { membership: "invite" });
    assertEquals((joinEvent.unsigned as JsonObject).prev_sender, alice.userId);
    // The state before the timeline, whole: the client never had this room's state.
    const types = room.state.events.map((e: JsonObject) => e.type);
    for (const type of ["m.room.create", "m.room.power_levels", "m.room.join_rules"]) {
      assert(types.includes(type), `${type} in ${types}`);
    }

    // A profile change is not a join: the next sync is incremental as usual.
    const rename = await server.deps.sender.send({
      roomId,
      sender: bob.userId,
      type: "m.room.member",
      stateKey: bob.userId,
      content: { membership: "join", displayname: "Bob" },
    });
    const next = await sync(server, bob.accessToken, { since: body.next_batch });
    const again = next.rooms.join[roomId];
    assertEquals(again.timeline.events.map((e: JsonObject) => e.event_id), [rename.eventId]);
    assertEquals(again.timeline.limited, false);
    assertEquals(again.state.events, []);
  } finally {
    await server.close();
  }
});

Deno.test("gapped and filtered incremental syncs carry the state changes the client missed", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const roomId = await publicRoom(server, alice.userId);
    await setState(server, roomId, alice.userId, "a.test.state", "changes", { v: 1 });
    await setState(server, roomId, alice.userId, "a.test.state", "stays", { v: 1 });
    const filter = JSON.stringify({
      room: { timeline: { types: ["a.filler"], limit: 1 }, state: { types: ["a.test.state"] } },
    });
    const first = await sync(server, alice.accessToken, { filter });
    assertEquals(first.rooms.join[roomId].state.events.length, 2);
    await setState(server, roomId, alice.userId, "a.test.state", "changes", { v: 2 });
    for (let i = 0; i < 5; i++) await send(server, roomId, alice.userId, "a.filler", { i });
    const body = await sync(server, alice.accessToken, { filter, since: first.next_batch });
    const room = body.rooms.join[roomId];
    assertEquals(room.timeline.limited, true);
    assertEquals(
      room.state.events.map((e: JsonObject) => [e.state_key, (e.content as JsonObject).v]),
      [["changes", 2]],
    );

    // Only events the filters drop: the room does not appear at all.
    const blocked = JSON.stringify({
      room: { timeline: { types: [] }, state: { types: ["a.test.state"] } },
    });
    const quiet = await sync(server, alice.accessToken, { filter: blocked });
    await send(server, roomId, alice.userId, "m.room.message", { body: "hidden" });
    const after = await sync(server, alice.accessToken, {
      filter: blocked,
      since: quiet.next_batch,
    });
    assertEquals(after.rooms.join, {});
  } finally {
    await server.close();
  }
});

Deno.test("lazy-loaded members: the gap's members come, members already sent do not", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice", "a password");
    const [bob, carol, dave] = await Promise.all(
      ["bob", "carol", "dave"].map((name) => registerUser(server, name)),
    );
    const roomId = await publicRoom(server, alice.userId);
    await member(server, roomId, bob.userId, "join");
    await member(server, roomId, carol.userId, "join");
    for (let i = 0; i < 5; i++) await send(server, roomId, bob.userId, "a.filler", { i });
    const filter = JSON.stringify({
      room: { state: { lazy_load_members: true }, timeline: { limit: 5 } },
    });
    const first = await sync(server, alice.accessToken, { filter });
    assertEquals(members(first.rooms.join[roomId].state.events), [
      `${alice.userId}:join`,
      `${bob.userId}:join`,
    ]);

    // Bob speaks again: his membership was sent already.
    await send(server, roomId, bob.userId, "a.filler", { i: 5 });
    const second = await sync(server, alice.accessToken, { filter, since: first.next_batch });
    assertEquals(members(second.rooms.join[roomId].state.events), []);

    // A gap: Dave joins unseen, Carol fills the timeline. Both members come.
    await member(server, roomId, dave.userId, "join");
    for (let i = 0; i < 8; i++) await send(server, roomId, carol.userId, "a.filler", { i });
    const third = await sync(server, alice.accessToken, { filter, since: second.next_batch });
    assertEquals(third.rooms.join[roomId].timeline.limited, true);
    assertEquals(members(third.rooms.join[roomId].state.events), [
      `${carol.userId}:join`,
      `${dave.userId}:join`,
    ]);

    // The client lost that response and retries from the older token: sent again.
    const retry = await sync(server, alice.accessToken, { filter, since: second.next_batch });
    assertEquals(members(retry.rooms.join[roomId].state.events), [
      `${carol.userId}:join`,
      `${dave.userId}:join`,
    ]);

    // Another device of Alice's has its own memory.
    const login = await server.request("POST", "/_matrix/client/v3/login", {
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: "alice" },
        password: "a password",
      },
    });
    assertEquals(login.status, 200);
    const other = await sync(server, login.body.access_token, {
      filter,
      since: second.next_batch,
    });
    assertEquals(members(other.rooms.join[roomId].state.events), [
      `${carol.userId}:join`,
      `${dave.userId}:join`,
    ]);

    // include_redundant_members sends them every time.
    const redundant = JSON.stringify({
      room: {
        state: { lazy_load_members: true, include_redundant_members: true },
        timeline: { limit: 5 },
      },
    });
    await send(server, roomId, carol.userId, "a.filler", { i: 9 });
    const fourth = await sync(server, alice.accessToken, {
      filter: redundant,
      since: third.next_batch,
    });
    assertEquals(members(fourth.rooms.join[roomId].state.events), [`${carol.userId}:join`]);
  } finally {
    await server.close();
  }
});

Deno.test("room summaries name heroes only for rooms without a name or alias", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await publicRoom(server, alice.userId);
    await member(server, roomId, bob.userId, "join");
    const filter = JSON.stringify({ room: { state: { lazy_load_members: true } } });
    const unnamed = await sync(server, alice.accessToken, { filter });
    assertEquals(unnamed.rooms.join[roomId].summary, {
      "m.heroes": [bob.userId],
      "m.joined_member_count": 2,
      "m.invited_member_count": 0,
    });
    await setState(server, roomId, alice.userId, "m.room.name", "", { name: "A room" });
    const named = await sync(server, alice.accessToken, { filter });
    assertEquals(named.rooms.join[roomId].summary, {
      "m.joined_member_count": 2,
      "m.invited_member_count": 0,
    });
  } finally {
    await server.close();
  }
});

Deno.test("a room joined and left within one window shows its whole state in leave", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await publicRoom(server, alice.userId);
    await setState(server, roomId, alice.userId, "a.test.state", "", { v: 1 });
    const filter = JSON.stringify({
      room: { timeline: { types: [] }, state: { types: ["a.test.state"] }, include_leave: true },
    });
    const first = await sync(server, bob.accessToken, { filter });
    await member(server, roomId, bob.userId, "join");
    await member(server, roomId, bob.userId, "leave");
    const body = await sync(server, bob.accessToken, { filter, since: first.next_batch });
    const left = body.rooms.leave[roomId];
    assertEquals(left.state.events.map((e: JsonObject) => e.type), ["a.test.state"]);
  } finally {
    await server.close();
  }
});
