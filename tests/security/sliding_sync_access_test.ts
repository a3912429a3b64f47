/**
 * Sliding sync (MSC4186) shows nothing a /sync would not: room subscriptions to rooms the
 * reader was never in, left, was kicked from or is only invited to; required_state `*` in an
 * invite; history before a `joined` reader's join; ignored users' messages and invites;
 * redacted events (timeline, and the room name and heroes an entry carries outside it); and
 * another user's or device's connection and to-device messages.
 */
import { assert, assertEquals } from "../assert.ts";
import {
  FAST_HASHING,
  loginUser,
  type RegisteredUser,
  registerUser,
} from "../routes/client_harness.ts";
import { startTestServer } from "../routes/test_server.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

const V3 = "/_matrix/client/v3";
const PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
const EVERYTHING = { required_state: [["*", "*"]], timeline_limit: 50 };
const EXTENSIONS = {
  receipts: { enabled: true },
  typing: { enabled: true },
  account_data: { enabled: true },
};

function room(roomId: string) {
  return `${V3}/rooms/${encodeURIComponent(roomId)}`;
}

async function ok(res: Promise<{ status: number; body: JsonObject }>): Promise<JsonObject> {
  const out = await res;
  assertEquals(out.status, 200, JSON.stringify(out.body));
  return out.body;
}

function send(server: Server, user: RegisteredUser, roomId: string, body: string) {
  return ok(server.request("PUT", `${room(roomId)}/send/m.room.message/${crypto.randomUUID()}`, {
    token: user.accessToken,
    body: { msgtype: "m.text", body },
  }));
}

function state(
  server: Server,
  user: RegisteredUser,
  roomId: string,
  type: string,
  content: JsonObject,
  key = "",
) {
  return ok(server.request("PUT", `${room(roomId)}/state/${type}/${encodeURIComponent(key)}`, {
    token: user.accessToken,
    body: content,
  }));
}

function post(server: Server, user: RegisteredUser, path: string, body: JsonObject = {}) {
  return ok(server.request("POST", path, { token: user.accessToken, body }));
}

async function createRoom(server: Server, user: RegisteredUser, body: JsonObject): Promise<string> {
  const out = await post(server, user, `${V3}/createRoom`, body);
  return out.room_id as string;
}

/** A room whose history has `visibility`: what a member may read, another reader must not. */
function roomWithHistory(
  server: Server,
  user: RegisteredUser,
  visibility: string,
  preset = "private_chat",
): Promise<string> {
  return createRoom(server, user, {
    preset,
    initial_state: [{
      type: "m.room.history_visibility",
      content: { history_visibility: visibility },
    }],
  });
}

/** Typing, a receipt and room account data in `roomId`, by `user`. */
async function ephemera(server: Server, user: RegisteredUser, roomId: string, eventId: string) {
  await ok(server.request("PUT", `${room(roomId)}/typing/${encodeURIComponent(user.userId)}`, {
    token: user.accessToken,
    body: { typing: true, timeout: 30_000 },
  }));
  await post(server, user, `${room(roomId)}/receipt/m.read/${encodeURIComponent(eventId)}`);
}

function slidingSync(server: Server, user: RegisteredUser, body: JsonObject, pos?: string) {
  const query = pos === undefined ? "" : `?pos=${encodeURIComponent(pos)}`;
  return server.request("POST", `${PATH}${query}`, { token: user.accessToken, body });
}

/** The whole answer's text, to look for markers anywhere in it. */
function text(body: unknown): string {
  return JSON.stringify(body);
}

Deno.test("sliding sync: a subscription to a room never joined, left or kicked from shows nothing past the membership", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const eve = await registerUser(server, "eve");
    const never = await roomWithHistory(server, alice, "shared");
    const neverMsg = await send(server, alice, never, "SECRET-never");
    await state(server, alice, never, "m.room.topic", { topic: "SECRET-never-topic" });
    await ephemera(server, alice, never, neverMsg.event_id as string);

    const kicked = await createRoom(server, alice, { preset: "public_chat" });
    await post(server, eve, `${V3}/join/${encodeURIComponent(kicked)}`);
    await send(server, alice, kicked, "visible-before-kick");
    await post(server, alice, `${room(kicked)}/kick`, { user_id: eve.userId });
    const kickedMsg = await send(server, alice, kicked, "SECRET-after-kick");
    await state(server, alice, kicked, "m.room.topic", { topic: "SECRET-kicked-topic" });
    await ephemera(server, alice, kicked, kickedMsg.event_id as string);

    const left = await createRoom(server, alice, { preset: "public_chat" });
    await post(server, eve, `${V3}/join/${encodeURIComponent(left)}`);
    await post(server, eve, `${room(left)}/leave`);
    const leftMsg = await send(server, alice, left, "SECRET-after-leave");
    await ephemera(server, alice, left, leftMsg.event_id as string);

    const subs = { [never]: EVERYTHING, [kicked]: EVERYTHING, [left]: EVERYTHING };
    const first = await slidingSync(server, eve, {
      lists: { all: { ranges: [[0, 9]], ...EVERYTHING } },
      room_subscriptions: subs,
      extensions: {
        ...EXTENSIONS,
        receipts: { enabled: true, rooms: ["*"] },
        typing: { enabled: true, rooms: ["*"] },
      },
    });
    assertEquals(first.status, 200, text(first.body));
    assert(!text(first.body).includes("SECRET"), text(first.body));
    assert(first.body.rooms[never] === undefined, "a room never joined is not sent");
    // No receipt or typing notice of a room after the reader's membership ended.
    for (const id of [never, kicked, left]) {
      assertEquals(first.body.extensions.receipts?.rooms?.[id], undefined, id);
      assertEquals(first.body.extensions.typing?.rooms?.[id], undefined, id);
    }

    // And after more news, incrementally.
    const again = await send(server, alice, kicked, "SECRET-later");
    await ephemera(server, alice, kicked, again.event_id as string);
    const second = await slidingSync(server, eve, {
      lists: { all: { ranges: [[0, 9]], ...EVERYTHING } },
      room_subscriptions: subs,
      extensions: EXTENSIONS,
    }, first.body.pos);
    assertEquals(second.status, 200, text(second.body));
    assert(!text(second.body).includes("SECRET"), text(second.body));
    assert(!text(second.body).includes(again.event_id as string), text(second.body));
    assertEquals(second.body.extensions.typing?.rooms?.[kicked], undefined);
  } finally {
    await server.close();
  }
});

Deno.test("sliding sync: an invitee sees the invite's stripped state only, even with required_state *", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await roomWithHistory(server, alice, "shared");
    const msg = await send(server, alice, roomId, "SECRET-invited");
    await state(server, alice, roomId, "m.room.topic", { topic: "stripped-state-topic" });
    await state(server, alice, roomId, "m.room.server_acl", {
      allow: ["*"],
      deny: ["SECRET.example"],
    });
    await ephemera(server, alice, roomId, msg.event_id as string);
    await post(server, alice, `${room(roomId)}/invite`, { user_id: bob.userId });
    const res = await slidingSync(server, bob, {
      lists: { all: { ranges: [[0, 9]], ...EVERYTHING } },
      room_subscriptions: { [roomId]: EVERYTHING },
      extensions: {
        ...EXTENSIONS,
        receipts: { enabled: true, rooms: ["*"] },
        typing: { enabled: true, rooms: ["*"] },
      },
    });
    assertEquals(res.status, 200, text(res.body));
    const entry = res.body.rooms[roomId];
    assert(entry?.invite_state, text(res.body));
    assertEquals(entry.timeline, undefined);
    assertEquals(entry.required_state, undefined);
    assertEquals(entry.joined_count, undefined);
    assert(!text(res.body).includes("SECRET"), text(res.body));
    assert(!text(res.body.extensions).includes(roomId), text(res.body.extensions));
  } finally {
    await server.close();
  }
});

Deno.test("sliding sync: a late joiner of a joined-visibility room sees nothing from before the join", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await roomWithHistory(server, alice, "joined", "public_chat");
    await send(server, alice, roomId, "SECRET-before-join");
    await post(server, bob, `${V3}/join/${encodeURIComponent(roomId)}`);
    await send(server, alice, roomId, "after-join");
    const res = await slidingSync(server, bob, {
      room_subscriptions: { [roomId]: EVERYTHING },
      lists: { all: { ranges: [[0, 9]], ...EVERYTHING } },
    });
    assertEquals(res.status, 200, text(res.body));
    assert(text(res.body.rooms[roomId].timeline).includes("after-join"));
    assert(!text(res.body).includes("SECRET"), text(res.body));
  } finally {
    await server.close();
  }
});

Deno.test("sliding sync: ignored users' messages and invites are not shown", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const mallory = await registerUser(server, "mallory");
    const shared = await createRoom(server, alice, { preset: "public_chat" });
    await post(server, bob, `${V3}/join/${encodeURIComponent(shared)}`);
    await post(server, mallory, `${V3}/join/${encodeURIComponent(shared)}`);
    await ok(
      server.request(
        "PUT",
        `${V3}/user/${encodeURIComponent(bob.userId)}/account_data/m.ignored_user_list`,
        {
          token: bob.accessToken,
          body: { ignored_users: { [mallory.userId]: {} } },
        },
      ),
    );
    await send(server, mallory, shared, "SECRET-ignored");
    await send(server, alice, shared, "from-alice");
    const invite = await createRoom(server, mallory, {
      preset: "private_chat",
      name: "SECRET-invite-room",
    });
    await post(server, mallory, `${room(invite)}/invite`, { user_id: bob.userId });
    const res = await slidingSync(server, bob, {
      lists: { all: { ranges: [[0, 9]], ...EVERYTHING } },
    });
    assertEquals(res.status, 200, text(res.body));
    assert(text(res.body.rooms[shared]).includes("from-alice"));
    assert(!text(res.body).includes("SECRET"), text(res.body));
    assertEquals(res.body.rooms[invite], undefined);
    // Nor counted: /sync shows no trace of an ignored user's invite.
    assertEquals(res.body.lists.all.count, 1, text(res.body.lists));
  } finally {
    await server.close();
  }
});

Deno.test("sliding sync: a redacted message, room name and display name show redacted", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const named = await createRoom(server, alice, { preset: "public_chat" });
    const nameEvent = await state(server, alice, named, "m.room.name", { name: "SECRET-name" });
    const avatarEvent = await state(server, alice, named, "m.room.avatar", {
      url: "mxc://x/SECRET",
    });
    const msg = await send(server, alice, named, "SECRET-message");
    for (const e of [nameEvent, avatarEvent, msg]) {
      await ok(
        server.request(
          "PUT",
          `${room(named)}/redact/${
            encodeURIComponent(e.event_id as string)
          }/${crypto.randomUUID()}`,
          {
            token: alice.accessToken,
            body: {},
          },
        ),
      );
    }
    // An unnamed room: heroes carry the other member's profile.
    const dm = await createRoom(server, alice, { preset: "private_chat", invite: [bob.userId] });
    await post(server, bob, `${V3}/join/${encodeURIComponent(dm)}`);
    const profile = await state(server, bob, dm, "m.room.member", {
      membership: "join",
      displayname: "SECRET-bob",
    }, bob.userId);
    await ok(
      server.request(
        "PUT",
        `${room(dm)}/redact/${encodeURIComponent(profile.event_id as string)}/r1`,
        {
          token: bob.accessToken,
          body: {},
        },
      ),
    );
    const res = await slidingSync(server, alice, {
      lists: { all: { ranges: [[0, 9]], required_state: [], timeline_limit: 1 } },
    });
    assertEquals(res.status, 200, text(res.body));
    assert(res.body.rooms[named] && res.body.rooms[dm], text(res.body));
    assert(!text(res.body).includes("SECRET"), text(res.body));
  } finally {
    await server.close();
  }
});

Deno.test("sliding sync: a connection and its to-device messages belong to one user and device", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice", "pw-alice-1");
    const bob = await registerUser(server, "bob");
    const alice2 = await loginUser(server, "alice", "pw-alice-1");
    const first = await slidingSync(server, alice, {
      conn_id: "c",
      lists: { all: { ranges: [[0, 9]], ...EVERYTHING } },
      extensions: { to_device: { enabled: true } },
    });
    assertEquals(first.status, 200, text(first.body));
    for (const other of [bob, alice2]) {
      const stolen = await slidingSync(server, other, {
        conn_id: "c",
        lists: { all: { ranges: [[0, 9]], ...EVERYTHING } },
      }, first.body.pos);
      assertEquals(stolen.status, 400, text(stolen.body));
      assertEquals(stolen.body.errcode, "M_UNKNOWN_POS");
    }
    await ok(server.request("PUT", `${V3}/sendToDevice/m.test/${crypto.randomUUID()}`, {
      token: bob.accessToken,
      body: { messages: { [alice.userId]: { [alice.deviceId]: { secret: "SECRET-to-device" } } } },
    }));
    const other = await slidingSync(server, alice2, {
      conn_id: "c",
      extensions: { to_device: { enabled: true } },
    });
    assertEquals(other.status, 200, text(other.body));
    assert(!text(other.body).includes("SECRET"), text(other.body));
    const mine = await slidingSync(server, alice, {
      conn_id: "c",
      extensions: { to_device: { enabled: true } },
    }, first.body.pos);
    assert(text(mine.body).includes("SECRET-to-device"), text(mine.body));
  } finally {
    await server.close();
  }
});

Deno.test("sliding sync: a withdrawn invite or rejected knock shows no history from before it", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const carol = await registerUser(server, "carol");
    const invited = await roomWithHistory(server, alice, "shared");
    await send(server, alice, invited, "SECRET-before-invite");
    await state(server, alice, invited, "m.room.topic", { topic: "SECRET-topic" });
    await post(server, alice, `${room(invited)}/invite`, { user_id: bob.userId });
    await post(server, alice, `${room(invited)}/kick`, { user_id: bob.userId });
    await send(server, alice, invited, "SECRET-after-withdrawal");

    const knocked = await createRoom(server, alice, {
      preset: "private_chat",
      room_version: "10",
      initial_state: [
        { type: "m.room.join_rules", content: { join_rule: "knock" } },
        { type: "m.room.history_visibility", content: { history_visibility: "shared" } },
      ],
    });
    await send(server, alice, knocked, "SECRET-before-knock");
    await post(server, carol, `${V3}/knock/${encodeURIComponent(knocked)}`);
    await post(server, alice, `${room(knocked)}/kick`, { user_id: carol.userId });
    await send(server, alice, knocked, "SECRET-after-rejection");

    for (const [user, roomId] of [[bob, invited], [carol, knocked]] as const) {
      const res = await slidingSync(server, user, {
        lists: { all: { ranges: [[0, 9]], ...EVERYTHING } },
        room_subscriptions: { [roomId]: EVERYTHING },
      });
      assertEquals(res.status, 200, text(res.body));
      assert(res.body.rooms[roomId], "listed: the membership was ended by someone else");
      assert(!text(res.body).includes("SECRET"), text(res.body));
    }
  } finally {
    await server.close();
  }
});

Deno.test("sliding sync: incremental answers across a join, or a leave and rejoin, hide what a joined-visibility reader missed", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await roomWithHistory(server, alice, "joined", "public_chat");
    const body = {
      lists: { all: { ranges: [[0, 9]], ...EVERYTHING } },
      room_subscriptions: { [roomId]: EVERYTHING },
    };
    const first = await slidingSync(server, bob, body);
    assertEquals(first.status, 200, text(first.body));
    await send(server, alice, roomId, "SECRET-before-join");
    await post(server, bob, `${V3}/join/${encodeURIComponent(roomId)}`);
    await send(server, alice, roomId, "after-join");
    const second = await slidingSync(server, bob, body, first.body.pos);
    assertEquals(second.status, 200, text(second.body));
    assert(text(second.body.rooms[roomId]).includes("after-join"), text(second.body));
    assert(!text(second.body).includes("SECRET"), text(second.body));

    await post(server, bob, `${room(roomId)}/leave`);
    const third = await slidingSync(server, bob, body, second.body.pos);
    assertEquals(third.status, 200, text(third.body));
    await send(server, alice, roomId, "SECRET-while-away");
    await post(server, bob, `${V3}/join/${encodeURIComponent(roomId)}`);
    await send(server, alice, roomId, "after-rejoin");
    const fourth = await slidingSync(server, bob, body, third.body.pos);
    assertEquals(fourth.status, 200, text(fourth.body));
    assert(text(fourth.body.rooms[roomId]).includes("after-rejoin"), text(fourth.body));
    assert(!text(fourth.body).includes("SECRET"), text(fourth.body));
  } finally {
    await server.close();
  }
});
