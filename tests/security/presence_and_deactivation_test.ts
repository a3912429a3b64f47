/**
 * Presence privacy and deactivation (issue 8, findings 18 and 19): presence, status message
 * included, is visible only to the user and to those sharing a joined room with them, as of the
 * current membership; and a deactivated account leaves every room it was joined to, rejects
 * its pending invites and withdraws its knocks, each as an ordinary member event, resuming
 * after an interruption.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "../routes/test_server.ts";
import { FAST_HASHING, type RegisteredUser, registerUser } from "../routes/client_harness.ts";
import { KvAccountStore } from "../../kv/account_store.ts";

const V3 = "/_matrix/client/v3";
type Server = Awaited<ReturnType<typeof startTestServer>>;

const room = (roomId: string) => `${V3}/rooms/${encodeURIComponent(roomId)}`;
const presencePath = (userId: string) => `${V3}/presence/${encodeURIComponent(userId)}/status`;

async function createRoom(server: Server, user: RegisteredUser, body: unknown = {}) {
  const res = await server.request("POST", `${V3}/createRoom`, { token: user.accessToken, body });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

async function ok(
  server: Server,
  method: string,
  path: string,
  user: RegisteredUser,
  body: unknown = method === "GET" ? undefined : {},
) {
  const res = await server.request(method, path, { token: user.accessToken, body });
  assertEquals(res.status, 200, `${method} ${path}: ${JSON.stringify(res.body)}`);
  return res.body;
}

Deno.test("presence: GET /presence/{userId}/status answers 403 unless the requester shares a joined room, checked per request", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    await ok(server, "PUT", presencePath(alice.userId), alice, {
      presence: "online",
      status_msg: "at the dentist",
    });
    const bobReads = () =>
      server.request("GET", presencePath(alice.userId), { token: bob.accessToken });

    const stranger = await bobReads();
    assertEquals([stranger.status, stranger.body.errcode], [403, "M_FORBIDDEN"]);
    assertEquals(JSON.stringify(stranger.body).includes("dentist"), false);
    // Her own presence she may always read.
    const own = await server.request("GET", presencePath(alice.userId), {
      token: alice.accessToken,
    });
    assertEquals([own.status, own.body.status_msg], [200, "at the dentist"]);

    const roomId = await createRoom(server, alice, { preset: "public_chat" });
    // An invite is not a shared room yet.
    await ok(server, "POST", `${room(roomId)}/invite`, alice, { user_id: bob.userId });
    assertEquals((await bobReads()).status, 403);
    await ok(server, "POST", `${room(roomId)}/join`, bob);
    const shared = await bobReads();
    assertEquals([shared.status, shared.body.status_msg], [200, "at the dentist"]);
    // Leaving takes effect on the next request: no cached answer outlives the membership.
    await ok(server, "POST", `${room(roomId)}/leave`, bob);
    assertEquals((await bobReads()).status, 403);
    // Nor does Alice leaving while Bob stays.
    await ok(server, "POST", `${room(roomId)}/join`, bob);
    assertEquals((await bobReads()).status, 200);
    await ok(server, "POST", `${room(roomId)}/leave`, alice);
    assertEquals((await bobReads()).status, 403);
  } finally {
    server.close();
  }
});

Deno.test("presence: /sync carries presence only of users sharing a joined room", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const carol = await registerUser(server, "carol");
    const roomId = await createRoom(server, alice, { preset: "public_chat" });
    await ok(server, "POST", `${room(roomId)}/join`, bob);
    await ok(server, "PUT", presencePath(alice.userId), alice, {
      presence: "online",
      status_msg: "a",
    });
    await ok(server, "PUT", presencePath(carol.userId), carol, {
      presence: "online",
      status_msg: "c",
    });
    const senders = (body: { presence?: { events?: { sender: string }[] } }) =>
      (body.presence?.events ?? []).map((e) => e.sender).sort();

    const first = await server.request("GET", `${V3}/sync?set_presence=offline`, {
      token: bob.accessToken,
    });
    assertEquals(first.status, 200);
    assertEquals(senders(first.body), [alice.userId]);
    // After Bob leaves, Alice's later changes no longer reach him; Carol's never did.
    await ok(server, "POST", `${room(roomId)}/leave`, bob);
    await ok(server, "PUT", presencePath(alice.userId), alice, {
      presence: "unavailable",
      status_msg: "a2",
    });
    await ok(server, "PUT", presencePath(carol.userId), carol, {
      presence: "unavailable",
      status_msg: "c2",
    });
    const next = await server.request(
      "GET",
      `${V3}/sync?set_presence=offline&timeout=0&since=${
        encodeURIComponent(first.body.next_batch)
      }`,
      { token: bob.accessToken },
    );
    assertEquals(next.status, 200);
    assertEquals(senders(next.body), []);
    const full = await server.request("GET", `${V3}/sync?set_presence=offline&full_state=true`, {
      token: bob.accessToken,
    });
    assertEquals(senders(full.body), []);
  } finally {
    server.close();
  }
});

/** Owner with three rooms: the victim joined to two, invited to the third, knocking on a fourth. */
async function roomsAround(server: Server, owner: RegisteredUser, victim: RegisteredUser) {
  const joinedA = await createRoom(server, owner, { preset: "public_chat" });
  const joinedB = await createRoom(server, owner, { preset: "public_chat" });
  const invited = await createRoom(server, owner, { preset: "private_chat" });
  const knocked = await createRoom(server, owner, {
    room_version: "10",
    initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }],
  });
  await ok(server, "POST", `${room(joinedA)}/join`, victim);
  await ok(server, "POST", `${room(joinedB)}/join`, victim);
  await ok(server, "POST", `${room(invited)}/invite`, owner, { user_id: victim.userId });
  await ok(server, "POST", `${V3}/knock/${encodeURIComponent(knocked)}`, victim);
  return { joined: [joinedA, joinedB], invited, knocked };
}

/** Check, as the room owner sees it, that the victim left each room by their own leave event. */
async function assertPartedEverywhere(
  server: Server,
  owner: RegisteredUser,
  victim: RegisteredUser,
  rooms: { joined: string[]; invited: string; knocked: string },
) {
  for (const roomId of [...rooms.joined, rooms.invited, rooms.knocked]) {
    const members = await ok(server, "GET", `${room(roomId)}/joined_members`, owner);
    assertEquals(Object.keys(members.joined).includes(victim.userId), false, roomId);
    const state = await ok(server, "GET", `${room(roomId)}/state`, owner) as {
      type: string;
      state_key: string;
      sender: string;
      content: { membership?: string };
    }[];
    const member = state.find((e) => e.type === "m.room.member" && e.state_key === victim.userId);
    assert(member, `no member event of the victim in ${roomId}`);
    assertEquals([member.content.membership, member.sender], ["leave", victim.userId], roomId);
  }
}

Deno.test("deactivation: the user leaves every joined room, rejects pending invites and withdraws knocks", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const owner = await registerUser(server, "owner");
    const victim = await registerUser(server, "victim", "correct horse");
    const rooms = await roomsAround(server, owner, victim);
    const res = await server.request("POST", `${V3}/account/deactivate`, {
      token: victim.accessToken,
      body: {
        auth: {
          type: "m.login.password",
          identifier: { type: "m.id.user", user: victim.userId },
          password: "correct horse",
        },
      },
    });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    await assertPartedEverywhere(server, owner, victim, rooms);
    // The owner's view of the joined rooms' timelines shows the leave as a normal event.
    const messages = await ok(
      server,
      "GET",
      `${room(rooms.joined[0])}/messages?dir=b&limit=5`,
      owner,
    );
    assert(
      messages.chunk.some((
        e: { type: string; state_key?: string; content: { membership?: string } },
      ) =>
        e.type === "m.room.member" && e.state_key === victim.userId &&
        e.content.membership === "leave"
      ),
    );
    assertEquals(await new KvAccountStore(server.kv).pendingDeactivations(), []);
  } finally {
    server.close();
  }
});

Deno.test("deactivation: parting interrupted after the account was marked is finished by a later login attempt or by the start-up resume", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const owner = await registerUser(server, "owner");
    const one = await registerUser(server, "one", "pw one");
    const two = await registerUser(server, "two", "pw two");
    const roomsOne = await roomsAround(server, owner, one);
    const roomsTwo = await roomsAround(server, owner, two);
    // What a process that died right after the first commit of a deactivation leaves behind:
    // the account marked deactivated and pending, no room left yet.
    const store = new KvAccountStore(server.kv);
    for (const userId of [one.userId, two.userId]) {
      const account = await store.getAccount(userId);
      assert(account);
      delete account.passwordHash;
      await store.markDeactivated({ ...account, deactivated: true });
    }
    assertEquals((await store.pendingDeactivations()).sort(), [one.userId, two.userId].sort());
    const joined = await ok(server, "GET", `${room(roomsOne.joined[0])}/joined_members`, owner);
    assert(one.userId in joined.joined, "still joined before the resume");

    // A login attempt on the deactivated account is refused, and finishes the parting.
    const login = await server.request("POST", `${V3}/login`, {
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: "one" },
        password: "pw one",
      },
    });
    assertEquals(login.status, 403);
    await assertPartedEverywhere(server, owner, one, roomsOne);
    assertEquals(await store.pendingDeactivations(), [two.userId]);

    // The resume a process runs at start-up finishes the rest.
    await server.deps.accounts.deactivations.resume();
    await assertPartedEverywhere(server, owner, two, roomsTwo);
    assertEquals(await store.pendingDeactivations(), []);
  } finally {
    server.close();
  }
});

Deno.test("deactivation: with erase the display name and avatar are cleared, without it they stay", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const profileOf = async (user: RegisteredUser, viewer: RegisteredUser) => {
      const res = await server.request("GET", `${V3}/profile/${encodeURIComponent(user.userId)}`, {
        token: viewer.accessToken,
      });
      return res.status === 200 ? res.body : {};
    };
    const owner = await registerUser(server, "owner");
    const deactivateAs = async (localpart: string, erase: boolean) => {
      const user = await registerUser(server, localpart, "pw");
      const profile = `${V3}/profile/${encodeURIComponent(user.userId)}`;
      await ok(server, "PUT", `${profile}/displayname`, user, { displayname: `Real ${localpart}` });
      await ok(server, "PUT", `${profile}/avatar_url`, user, {
        avatar_url: "mxc://example.org/me",
      });
      const res = await server.request("POST", `${V3}/account/deactivate`, {
        token: user.accessToken,
        body: {
          erase,
          auth: {
            type: "m.login.password",
            identifier: { type: "m.id.user", user: user.userId },
            password: "pw",
          },
        },
      });
      assertEquals(res.status, 200, JSON.stringify(res.body));
      return await profileOf(user, owner);
    };
    const erased = await deactivateAs("erased", true);
    assertEquals([erased.displayname, erased.avatar_url], [undefined, undefined]);
    const kept = await deactivateAs("kept", false);
    assertEquals([kept.displayname, kept.avatar_url], ["Real kept", "mxc://example.org/me"]);
  } finally {
    server.close();
  }
});
