/**
 * Guest access (spec: "Guest access"; SyTest 30rooms/13guestaccess.pl and the guest halves of
 * 30history-visibility.pl): registering guests behind TESSERA_GUEST_ACCESS, the endpoints they
 * may call, joining only rooms open to guests, leaving when guest access is revoked, reading
 * world_readable rooms without joining, and upgrading to a full account.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { FAST_HASHING, type RegisteredUser, registerUser } from "./client_harness.ts";
import { guestMayRequest } from "../../routes/client/guest_rules.ts";
import { assembleServer } from "../../main.ts";
import { loadConfig } from "../../domain/config.ts";

const V3 = "/_matrix/client/v3";
const GUESTS_ON = { TESSERA_GUEST_ACCESS: "on" };

type Server = Awaited<ReturnType<typeof startTestServer>>;

async function registerGuest(server: Server): Promise<RegisteredUser> {
  const res = await server.request("POST", `${V3}/register?kind=guest`, { body: {} });
  assertEquals(res.status, 200);
  return {
    userId: res.body.user_id,
    accessToken: res.body.access_token,
    deviceId: res.body.device_id,
  };
}

async function createRoom(server: Server, token: string, body: Record<string, unknown> = {}) {
  const res = await server.request("POST", `${V3}/createRoom`, { token, body });
  assertEquals(res.status, 200);
  return res.body.room_id as string;
}

function putState(server: Server, token: string, roomId: string, type: string, content: unknown) {
  return server.request("PUT", `${V3}/rooms/${encodeURIComponent(roomId)}/state/${type}/`, {
    token,
    body: content,
  });
}

const room = (roomId: string) => `${V3}/rooms/${encodeURIComponent(roomId)}`;

Deno.test("guest registration is off unless TESSERA_GUEST_ACCESS is on", async () => {
  const off = await startTestServer();
  try {
    const res = await off.request("POST", `${V3}/register?kind=guest`, { body: {} });
    assertEquals(res.status, 403);
    assertEquals(res.body.errcode, "M_GUEST_ACCESS_FORBIDDEN");
  } finally {
    off.close();
  }
  // On, a guest needs no UIA, even with registration closed, and its other parameters are ignored.
  const on = await startTestServer({ ...GUESTS_ON, TESSERA_REGISTRATION: "closed" });
  try {
    const res = await on.request("POST", `${V3}/register?kind=guest`, {
      body: { username: "chosen", device_id: "CHOSEN", initial_device_display_name: "Guest tab" },
    });
    assertEquals(res.status, 200);
    assert(res.body.user_id !== "@chosen:example.org:8448");
    assert(res.body.device_id !== "CHOSEN");
    const token = res.body.access_token;
    const who = await on.request("GET", `${V3}/account/whoami`, { token });
    assertEquals(who.body.is_guest, true);
    const device = await on.request("GET", `${V3}/devices/${res.body.device_id}`, { token });
    assertEquals(device.body.display_name, "Guest tab");
  } finally {
    on.close();
  }
});

Deno.test("guests may call only the guest endpoints", async () => {
  const server = await startTestServer(GUESTS_ON);
  try {
    const guest = await registerGuest(server);
    const token = guest.accessToken;
    const refused = [
      ["POST", `${V3}/createRoom`, {}],
      ["GET", `${V3}/pushrules/`, undefined],
      ["PUT", `${V3}/presence/${encodeURIComponent(guest.userId)}/status`, { presence: "online" }],
      ["PUT", `${room("!r:example.org:8448")}/send/m.reaction/t1`, {}],
      ["PUT", `${room("!r:example.org:8448")}/state/m.room.topic/`, { topic: "x" }],
      ["GET", `${V3}/events`, undefined],
      ["POST", `/_matrix/client/r0/createRoom`, {}],
    ] as const;
    for (const [method, path, body] of refused) {
      const res = await server.request(method, path, { token, body });
      assertEquals([path, res.status, res.body.errcode], [path, 403, "M_GUEST_ACCESS_FORBIDDEN"]);
    }
    // Allowed ones reach their handlers (whatever those then answer).
    const sync = await server.request("GET", `${V3}/sync?timeout=0`, { token });
    assertEquals(sync.status, 200);
    const name = await server.request(
      "PUT",
      `${V3}/profile/${encodeURIComponent(guest.userId)}/displayname`,
      { token, body: { displayname: "creeper" } },
    );
    assertEquals(name.status, 200);
    const send = await server.request(
      "PUT",
      `${room("!r:example.org:8448")}/send/m.room.message/t2`,
      {
        token,
        body: { msgtype: "m.text", body: "hi" },
      },
    );
    assert(send.body.errcode !== "M_GUEST_ACCESS_FORBIDDEN");
  } finally {
    server.close();
  }
});

Deno.test("guests join only rooms open to guests, and leave when guest access is revoked", async () => {
  const server = await startTestServer(GUESTS_ON);
  try {
    const alice = await registerUser(server, "alice");
    const guest = await registerGuest(server);
    const roomId = await createRoom(server, alice.accessToken, { preset: "public_chat" });

    // Public, but not open to guests.
    const closed = await server.request("POST", `${room(roomId)}/join`, {
      token: guest.accessToken,
      body: {},
    });
    assertEquals(closed.status, 403);
    // An invite does not open it either.
    await server.request("POST", `${room(roomId)}/invite`, {
      token: alice.accessToken,
      body: { user_id: guest.userId },
    });
    const invited = await server.request("POST", `${V3}/join/${encodeURIComponent(roomId)}`, {
      token: guest.accessToken,
      body: {},
    });
    assertEquals(invited.status, 403);

    assertEquals(
      (await putState(server, alice.accessToken, roomId, "m.room.guest_access", {
        guest_access: "can_join",
      })).status,
      200,
    );
    const joined = await server.request("POST", `${room(roomId)}/join`, {
      token: guest.accessToken,
      body: {},
    });
    assertEquals(joined.status, 200);
    const member = await server.request(
      "GET",
      `${room(roomId)}/state/m.room.member/${encodeURIComponent(guest.userId)}`,
      { token: alice.accessToken },
    );
    assertEquals(member.body.membership, "join");
    assertEquals(member.body.kind, "guest");
    const sent = await server.request("PUT", `${room(roomId)}/send/m.room.message/t1`, {
      token: guest.accessToken,
      body: { msgtype: "m.text", body: "sup" },
    });
    assertEquals(sent.status, 200);

    // Revoking guest access makes the guest leave (its own leave event, after the revocation).
    const before = await server.request("GET", `${V3}/sync?timeout=0`, {
      token: alice.accessToken,
    });
    assertEquals(
      (await putState(server, alice.accessToken, roomId, "m.room.guest_access", {
        guest_access: "forbidden",
      })).status,
      200,
    );
    let since = before.body.next_batch;
    let left = false;
    for (let i = 0; i < 20 && !left; i++) {
      const sync = await server.request("GET", `${V3}/sync?since=${since}&timeout=10000`, {
        token: alice.accessToken,
      });
      since = sync.body.next_batch;
      const events = sync.body.rooms?.join?.[roomId]?.timeline?.events ?? [];
      left = events.some((
        e: { type: string; state_key?: string; content: { membership?: string } },
      ) =>
        e.type === "m.room.member" && e.state_key === guest.userId &&
        e.content.membership === "leave"
      );
    }
    assert(left, "the guest left");
    const again = await server.request("POST", `${room(roomId)}/join`, {
      token: guest.accessToken,
      body: {},
    });
    assertEquals(again.status, 403);
  } finally {
    server.close();
  }
});

Deno.test("guests read world_readable rooms without joining, and nothing else", async () => {
  const server = await startTestServer(GUESTS_ON);
  try {
    const alice = await registerUser(server, "alice");
    const guest = await registerGuest(server);
    const open = await createRoom(server, alice.accessToken, { preset: "public_chat" });
    await putState(server, alice.accessToken, open, "m.room.history_visibility", {
      history_visibility: "world_readable",
    });
    const shared = await createRoom(server, alice.accessToken, { preset: "public_chat" });
    for (const [roomId, status] of [[open, 200], [shared, 403]] as const) {
      const state = await server.request("GET", `${room(roomId)}/state`, {
        token: guest.accessToken,
      });
      assertEquals(state.status, status);
      const messages = await server.request("GET", `${room(roomId)}/messages?dir=b`, {
        token: guest.accessToken,
      });
      if (status === 200) assertEquals(messages.status, 200);
      else assert(messages.status === 403 || messages.body.chunk?.length === 0);
    }
    // Not joined, a guest cannot post even where it may read.
    const send = await server.request("PUT", `${room(open)}/send/m.room.message/t1`, {
      token: guest.accessToken,
      body: { msgtype: "m.text", body: "sup" },
    });
    assertEquals(send.status, 403);
  } finally {
    server.close();
  }
});

Deno.test("a guest upgrades to a full account with its own user ID, and only its own", async () => {
  const server = await startTestServer(GUESTS_ON, FAST_HASHING);
  try {
    const guest = await registerGuest(server);
    const other = await registerGuest(server);
    const localpart = guest.userId.slice(1, guest.userId.indexOf(":"));

    // Another guest's token cannot take this guest's user ID.
    const stolen = await server.request("POST", `${V3}/register`, {
      body: {
        username: localpart,
        password: "new-pw",
        guest_access_token: other.accessToken,
        auth: { type: "m.login.dummy" },
      },
    });
    assertEquals(stolen.status, 403);
    // Nor can a full account's token upgrade anything.
    const full = await registerUser(server, "bob");
    const notGuest = await server.request("POST", `${V3}/register`, {
      body: {
        username: "bob",
        guest_access_token: full.accessToken,
        auth: { type: "m.login.dummy" },
      },
    });
    assertEquals(notGuest.status, 403);

    // The guest itself, in two steps as clients do: a 401 challenge, then m.login.dummy.
    const body = { username: localpart, password: "new-pw", guest_access_token: guest.accessToken };
    const challenge = await server.request("POST", `${V3}/register`, { body });
    assertEquals(challenge.status, 401);
    const upgraded = await server.request("POST", `${V3}/register`, {
      body: { ...body, auth: { type: "m.login.dummy", session: challenge.body.session } },
    });
    assertEquals(upgraded.status, 200);
    assertEquals(upgraded.body.user_id, guest.userId);
    const who = await server.request("GET", `${V3}/account/whoami`, {
      token: upgraded.body.access_token,
    });
    assertEquals(who.body, {
      user_id: guest.userId,
      device_id: upgraded.body.device_id,
      is_guest: false,
    });
    const created = await server.request("POST", `${V3}/createRoom`, {
      token: upgraded.body.access_token,
      body: {},
    });
    assertEquals(created.status, 200);
    // The guest token is gone, and the password works.
    const old = await server.request("GET", `${V3}/account/whoami`, { token: guest.accessToken });
    assertEquals(old.status, 401);
    const login = await server.request("POST", `${V3}/login`, {
      body: { type: "m.login.password", user: localpart, password: "new-pw" },
    });
    assertEquals(login.status, 200);
  } finally {
    server.close();
  }
});

Deno.test("guest rules: by method and path under every client API root", () => {
  const url = (path: string) => `http://localhost${path}`;
  const cases: [string, string, boolean][] = [
    ["GET", "/_matrix/client/v3/sync", true],
    ["GET", "/_matrix/client/r0/sync?since=s1", true],
    ["HEAD", "/_matrix/client/v3/sync", true],
    ["POST", "/_matrix/client/v3/sync", false],
    ["GET", "/_matrix/client/v3/rooms/%21a%3Ab/state/m.room.member/%40u%3Ab", true],
    ["GET", "/_matrix/client/v3/rooms/%21a%3Ab/state/m.room.name", true],
    ["PUT", "/_matrix/client/v3/rooms/%21a%3Ab/state/m.room.name/", false],
    ["PUT", "/_matrix/client/v3/rooms/%21a%3Ab/send/m.room.message/t", true],
    ["PUT", "/_matrix/client/v3/rooms/%21a%3Ab/send/m.room.encrypted/t", false],
    ["GET", "/_matrix/client/v3/events?room_id=%21a%3Ab", true],
    ["GET", "/_matrix/client/v3/events", false],
    ["GET", "/_matrix/client/v3/events/%24e", false],
    ["GET", "/_matrix/client/v3/initialSync", false],
    ["GET", "/_matrix/client/v3/rooms/%21a%3Ab/initialSync", true],
    ["GET", "/_matrix/client/v1/rooms/%21a%3Ab/relations/%24e/m.thread", true],
    ["POST", "/_matrix/client/v3/rooms/%21a%3Ab/invite", false],
    ["POST", "/_matrix/client/v3/rooms/%21a%3Ab/kick", false],
    ["DELETE", "/_matrix/client/v3/devices/D", false],
    ["POST", "/_matrix/client/v3/account/deactivate", false],
    ["POST", "/_matrix/client/v3/user/%40u%3Ab/filter", false],
    ["GET", "/_matrix/client/v3/sync/extra", false],
  ];
  for (const [method, path, allowed] of cases) {
    assertEquals([method, path, guestMayRequest(method, url(path))], [method, path, allowed]);
  }
});

Deno.test("turning guest access off shuts existing guests out", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const serve = async (guestAccess: "on" | "off") => {
      const config = loadConfig({
        TESSERA_SERVER_NAME: "example.org:8448",
        TESSERA_GUEST_ACCESS: guestAccess,
      }, { dev: true });
      return (await assembleServer(config, kv)).app;
    };
    const on = await serve("on");
    const registered = await (await on.request(`${V3}/register?kind=guest`, {
      method: "POST",
      body: "{}",
    })).json();
    const whoami = (app: typeof on) =>
      app.request(`${V3}/account/whoami`, {
        headers: { authorization: `Bearer ${registered.access_token}` },
      });
    assertEquals((await whoami(on)).status, 200);
    const off = await serve("off");
    const refused = await whoami(off);
    assertEquals(refused.status, 403);
    assertEquals((await refused.json()).errcode, "M_GUEST_ACCESS_FORBIDDEN");
  } finally {
    kv.close();
  }
});
