/**
 * Regression tests for issue 8's read findings 1, 2, 7 and 20: history visibility in /sync,
 * never-joined users in `rooms.leave`, `m.ignored_user_list`, and redacted content on every
 * read path. Each drives the real HTTP routes of an in-process server.
 */
import { assert, assertEquals } from "../assert.ts";
import { type RegisteredUser, registerUser } from "../routes/client_harness.ts";
import { startTestServer } from "../routes/test_server.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

const V3 = "/_matrix/client/v3";
const q = (value: unknown) => encodeURIComponent(JSON.stringify(value));
const INCLUDE_LEAVE = q({ room: { include_leave: true } });

/** Small client over the test server for one user. */
function client(server: Server, user: RegisteredUser) {
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await server.request(method, `${V3}${path}`, { token: user.accessToken, body });
    return res;
  };
  const ok = async (method: string, path: string, body?: unknown) => {
    const res = await call(method, path, body);
    if (res.status !== 200) {
      throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    return res.body;
  };
  let txn = 0;
  const room = (roomId: string) => `/rooms/${encodeURIComponent(roomId)}`;
  return {
    user,
    call,
    ok,
    createRoom: async (body: JsonObject = {}) =>
      (await ok("POST", "/createRoom", { preset: "public_chat", ...body })).room_id as string,
    say: async (roomId: string, text: string) =>
      (await ok("PUT", `${room(roomId)}/send/m.room.message/t${++txn}`, {
        msgtype: "m.text",
        body: text,
      })).event_id as string,
    state: async (roomId: string, type: string, content: JsonObject, key = "") =>
      (await ok("PUT", `${room(roomId)}/state/${type}/${encodeURIComponent(key)}`, content))
        .event_id as string,
    join: (roomId: string) => ok("POST", `${room(roomId)}/join`, {}),
    leave: (roomId: string) => ok("POST", `${room(roomId)}/leave`, {}),
    invite: (roomId: string, userId: string) =>
      ok("POST", `${room(roomId)}/invite`, { user_id: userId }),
    kick: (roomId: string, userId: string) =>
      ok("POST", `${room(roomId)}/kick`, { user_id: userId }),
    knock: (roomId: string) => ok("POST", `/knock/${encodeURIComponent(roomId)}`, {}),
    redact: async (roomId: string, eventId: string) =>
      (await ok("PUT", `${room(roomId)}/redact/${encodeURIComponent(eventId)}/r${++txn}`, {}))
        .event_id as string,
    sync: (query = "") => ok("GET", `/sync${query ? `?${query}` : ""}`),
    ignore: (userIds: string[]) =>
      ok("PUT", `/user/${encodeURIComponent(user.userId)}/account_data/m.ignored_user_list`, {
        ignored_users: Object.fromEntries(userIds.map((u) => [u, {}])),
      }),
  };
}

/** Every message body anywhere in a sync response's rooms sections. */
function bodiesIn(value: unknown): string[] {
  const out: string[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object") {
      const o = v as Record<string, unknown>;
      if (o.type === "m.room.message" && o.content && typeof o.content === "object") {
        const body = (o.content as Record<string, unknown>).body;
        if (typeof body === "string") out.push(body);
      }
      Object.values(o).forEach(walk);
    }
  };
  walk(value);
  return out;
}

async function setup() {
  const server = await startTestServer();
  const alice = client(server, await registerUser(server, "alice"));
  const bob = client(server, await registerUser(server, "bob"));
  const carol = client(server, await registerUser(server, "carol"));
  return { server, alice, bob, carol };
}

for (const visibility of ["joined", "invited"]) {
  Deno.test(`finding 1: /sync hides history from before the join (${visibility})`, async () => {
    const { server, alice, bob } = await setup();
    try {
      const roomId = await alice.createRoom();
      await alice.state(roomId, "m.room.history_visibility", { history_visibility: visibility });
      await alice.say(roomId, "before-1");
      const first = await bob.sync();
      await alice.say(roomId, "before-2");
      await bob.join(roomId);
      await alice.say(roomId, "after");

      // Incremental sync whose since predates the join: newly joined room, full state.
      const incremental = await bob.sync(`since=${first.next_batch}`);
      const entry = incremental.rooms.join[roomId];
      assert(entry, "the newly joined room is in the incremental sync");
      assertEquals(bodiesIn(incremental.rooms), ["after"]);
      // Its state comes whole, in the state section or, for current state set before the
      // join, in the timeline where it happened (as Synapse's sync shows it).
      assert(
        [...entry.state.events, ...entry.timeline.events].some((e: JsonObject) =>
          e.type === "m.room.create"
        ),
        "a newly joined room still gets its full state",
      );
      assertEquals(typeof entry.timeline.prev_batch, "string");

      // Initial sync.
      const initial = await bob.sync();
      assertEquals(bodiesIn(initial.rooms), ["after"]);

      // rooms.leave after leaving.
      await bob.leave(roomId);
      const left = await bob.sync(`filter=${INCLUDE_LEAVE}`);
      assert(left.rooms.leave[roomId], "the left room is shown with include_leave");
      assertEquals(bodiesIn(left.rooms), ["after"]);
      const leftIncremental = await bob.sync(`since=${first.next_batch}`);
      assertEquals(bodiesIn(leftIncremental.rooms), ["after"]);
    } finally {
      server.close();
    }
  });
}

Deno.test("finding 2: knock+withdraw, rejected invite and withdrawn invite read no history", async () => {
  const { server, alice, bob, carol } = await setup();
  try {
    const dave = client(server, await registerUser(server, "dave"));
    const roomId = await alice.createRoom({ preset: "private_chat", name: "Secret plans" });
    await alice.state(roomId, "m.room.join_rules", { join_rule: "knock" });
    await alice.state(roomId, "m.room.topic", { topic: "nobody outside may read this" });
    await alice.say(roomId, "private-1");
    await alice.say(roomId, "private-2");

    await bob.knock(roomId);
    await bob.leave(roomId); // withdraw the knock
    await alice.invite(roomId, carol.user.userId);
    await carol.leave(roomId); // reject the invite
    await alice.invite(roomId, dave.user.userId);
    await alice.kick(roomId, dave.user.userId); // withdraw the invite

    for (const who of [bob, carol, dave]) {
      const sync = await who.sync(`filter=${INCLUDE_LEAVE}`);
      const entry = sync.rooms.leave[roomId];
      assert(entry, `${who.user.userId} sees the room as left`);
      assertEquals(bodiesIn(sync.rooms), [], `${who.user.userId} reads no messages`);
      const types = [...entry.timeline.events, ...entry.state.events].map((e: JsonObject) =>
        `${e.type}|${e.state_key}`
      );
      assert(
        types.every((t: string) => t === `m.room.member|${who.user.userId}`),
        `${who.user.userId} sees only their own membership: ${types}`,
      );
      assert(types.length > 0, "the leave itself is shown");
    }
  } finally {
    server.close();
  }
});

Deno.test("finding 7: events and invites from ignored users are not delivered", async () => {
  const { server, alice, bob, carol } = await setup();
  try {
    const roomId = await alice.createRoom();
    await bob.join(roomId);
    await carol.join(roomId);
    await bob.ignore([carol.user.userId]);
    const since = (await bob.sync()).next_batch;
    const fromCarol = await carol.say(roomId, "bob: carol speaking");
    const fromAlice = await alice.say(roomId, "bob: alice speaking");
    // Carol sets the topic: state events of ignored users are still state.
    // Room version 12: the creator is not listed; carol may set the topic.
    await alice.state(roomId, "m.room.power_levels", { users: { [carol.user.userId]: 50 } });
    await carol.state(roomId, "m.room.topic", { topic: "carol's topic" });

    const initial = await bob.sync();
    assertEquals(bodiesIn(initial.rooms).includes("bob: carol speaking"), false, "initial");
    assert(bodiesIn(initial.rooms).includes("bob: alice speaking"));
    const incremental = await bob.sync(`since=${since}`);
    assertEquals(bodiesIn(incremental.rooms), ["bob: alice speaking"], "incremental");
    assert(
      incremental.rooms.join[roomId].timeline.events.some((e: JsonObject) =>
        e.type === "m.room.topic"
      ),
      "state events of ignored users still arrive",
    );

    const room = `/rooms/${encodeURIComponent(roomId)}`;
    const messages = await bob.ok("GET", `${room}/messages?dir=b&limit=50`);
    assertEquals(bodiesIn(messages), ["bob: alice speaking"], "/messages");
    const context = await bob.ok("GET", `${room}/context/${encodeURIComponent(fromAlice)}`);
    assertEquals(bodiesIn(context).includes("bob: carol speaking"), false, "/context");
    const single = await bob.call("GET", `${room}/event/${encodeURIComponent(fromCarol)}`);
    assertEquals(single.status, 404, "/event of an ignored user's message");
    const notifications = await bob.ok("GET", "/notifications");
    assertEquals(bodiesIn(notifications), ["bob: alice speaking"], "/notifications");

    // Invites from an ignored user are not delivered.
    const other = await carol.createRoom({ preset: "private_chat" });
    await carol.invite(other, bob.user.userId);
    assertEquals((await bob.sync()).rooms.invite[other], undefined, "initial sync invite");
    assertEquals((await bob.sync(`since=${since}`)).rooms.invite[other], undefined);

    // Un-ignoring brings them back (the list is read from account data, never cached stale).
    await bob.ignore([]);
    const after = await bob.sync();
    assert(after.rooms.invite[other], "the invite shows once carol is no longer ignored");
    assert(bodiesIn(after.rooms).includes("bob: carol speaking"));
  } finally {
    server.close();
  }
});

Deno.test("finding 20: redacted content is stripped in federation-format sync, /notifications and /members", async () => {
  const { server, alice, bob } = await setup();
  try {
    const roomId = await alice.createRoom();
    await bob.join(roomId);
    await bob.state(roomId, "m.room.member", {
      membership: "join",
      displayname: "secret name",
    }, bob.user.userId);
    const memberEvent = (await bob.ok(
      "GET",
      `/rooms/${encodeURIComponent(roomId)}/state/m.room.member/${
        encodeURIComponent(bob.user.userId)
      }?format=event`,
    )).event_id as string;
    const message = await alice.say(roomId, "bob: secret message");
    await alice.redact(roomId, message);
    await bob.redact(roomId, memberEvent);

    const fed = await bob.sync(`filter=${q({ event_format: "federation" })}`);
    const events = fed.rooms.join[roomId].timeline.events as JsonObject[];
    const redacted = events.find((e) => e.event_id === message);
    assert(redacted, "the redacted message is in the timeline");
    assertEquals(redacted.content, {}, "federation format: the PDU is redacted");
    assertEquals(JSON.stringify(fed).includes("secret"), false, "no redacted content anywhere");

    const notifications = await bob.ok("GET", "/notifications");
    const notified = notifications.notifications.find((n: JsonObject) =>
      (n.event as JsonObject).event_id === message
    );
    assert(notified, "the notification stays");
    assertEquals(notified.event.content, {}, "/notifications: content stripped");

    const members = await bob.ok("GET", `/rooms/${encodeURIComponent(roomId)}/members`);
    const bobMember = members.chunk.find((e: JsonObject) => e.state_key === bob.user.userId);
    assertEquals(bobMember.content, { membership: "join" }, "/members: content stripped");
    const joined = await bob.ok("GET", `/rooms/${encodeURIComponent(roomId)}/joined_members`);
    assertEquals(joined.joined[bob.user.userId].display_name, null, "/joined_members");
  } finally {
    server.close();
  }
});

Deno.test("finding 1 follow-up: a rejoiner's sync timeline carries current state set while they were away (as SyTest's 'Current state appears in timeline in private history' and Synapse)", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  const alice = client(server, await registerUser(server, "alice"));
  const bob = client(server, await registerUser(server, "bob"));
  const carol = client(server, await registerUser(server, "carol"));
  try {
    const roomId = await alice.createRoom();
    await bob.join(roomId);
    await alice.state(roomId, "m.room.history_visibility", { history_visibility: "joined" });
    await alice.invite(roomId, carol.user.userId);
    const since = (await bob.sync()).next_batch as string;
    await bob.leave(roomId);
    await alice.say(roomId, "sent while bob was away");
    await carol.join(roomId);
    await bob.join(roomId);
    const body = await bob.sync(`since=${since}`);
    const timeline = body.rooms.join[roomId].timeline.events as JsonObject[];
    // Carol's join is current state, which a joined member sees anyway (/state), so it is
    // shown where it happened; the message sent while bob was away stays hidden.
    assert(
      timeline.some((e) =>
        e.type === "m.room.member" && e.state_key === carol.user.userId &&
        (e.content as JsonObject).membership === "join"
      ),
      JSON.stringify(timeline.map((e) => [e.type, e.state_key])),
    );
    assertEquals(bodiesIn(body).includes("sent while bob was away"), false);
  } finally {
    server.close();
  }
});
