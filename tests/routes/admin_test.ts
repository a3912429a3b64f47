/**
 * Server administration: whois, and account locks and suspensions with their effects (a locked
 * user is refused everything but logging out, logging in included; a suspended one reads but
 * does not write). Administrators come from TESSERA_ADMINS.
 */
import { assertEquals } from "../assert.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const V1 = "/_matrix/client/v1";
const V3 = "/_matrix/client/v3";

async function adminServer() {
  return await startTestServer({ TESSERA_ADMINS: "@root:example.org:8448" }, FAST_HASHING);
}

Deno.test("admin: only administrators lock, suspend or read others' status; checks come first", async () => {
  const server = await adminServer();
  try {
    const root = await registerUser(server, "root");
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    // A non-administrator learns nothing, not even whether the account exists.
    for (const target of [bob.userId, "@nobody:example.org:8448"]) {
      const res = await server.request("GET", `${V1}/admin/lock/${encodeURIComponent(target)}`, {
        token: alice.accessToken,
      });
      assertEquals([res.status, res.body.errcode], [403, "M_FORBIDDEN"]);
    }
    const put = await server.request("PUT", `${V1}/admin/suspend/${bob.userId}`, {
      token: alice.accessToken,
      body: { suspended: true },
    });
    assertEquals([put.status, put.body.errcode], [403, "M_FORBIDDEN"]);

    const get = (path: string) => server.request("GET", path, { token: root.accessToken });
    assertEquals((await get(`${V1}/admin/lock/${bob.userId}`)).body, { locked: false });
    assertEquals((await get(`${V1}/admin/suspend/@nobody:example.org:8448`)).status, 404);
    assertEquals(
      (await get(`${V1}/admin/suspend/@bob:elsewhere.test`)).body.errcode,
      "M_INVALID_PARAM",
    );
    const self = await server.request("PUT", `${V1}/admin/lock/${root.userId}`, {
      token: root.accessToken,
      body: { locked: true },
    });
    assertEquals([self.status, self.body.errcode], [403, "M_FORBIDDEN"]);
    const bad = await server.request("PUT", `${V1}/admin/lock/${bob.userId}`, {
      token: root.accessToken,
      body: { locked: "yes" },
    });
    assertEquals(bad.status, 400);
    assertEquals((await get(`${V1}/admin/lock/${bob.userId}`)).body, { locked: false });

    const caps = async (token: string) =>
      (await server.request("GET", `${V3}/capabilities`, { token })).body.capabilities[
        "m.account_moderation"
      ];
    assertEquals(await caps(root.accessToken), { suspend: true, lock: true });
    assertEquals(await caps(alice.accessToken), undefined);
  } finally {
    await server.close();
  }
});

Deno.test("admin: a locked user is refused everything but logout, login included, until unlocked", async () => {
  const server = await adminServer();
  try {
    const root = await registerUser(server, "root");
    const bob = await registerUser(server, "bob", "bob-password-1");
    const lock = (locked: boolean) =>
      server.request("PUT", `${V1}/admin/lock/${bob.userId}`, {
        token: root.accessToken,
        body: { locked },
      });
    assertEquals((await lock(true)).body, { locked: true });

    const whoami = await server.request("GET", `${V3}/account/whoami`, { token: bob.accessToken });
    assertEquals([whoami.status, whoami.body.errcode, whoami.body.soft_logout], [
      401,
      "M_USER_LOCKED",
      true,
    ]);
    const login = await server.request("POST", `${V3}/login`, {
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: "bob" },
        password: "bob-password-1",
      },
    });
    assertEquals([login.status, login.body.errcode], [401, "M_USER_LOCKED"]);
    const devices = await server.request("GET", `${V3}/devices`, { token: root.accessToken });
    assertEquals(devices.status, 200);

    assertEquals((await lock(false)).body, { locked: false });
    const again = await server.request("GET", `${V3}/account/whoami`, { token: bob.accessToken });
    assertEquals([again.status, again.body.user_id], [200, bob.userId]);

    await lock(true);
    const logout = await server.request("POST", `${V3}/logout`, { token: bob.accessToken });
    assertEquals(logout.status, 200);
  } finally {
    await server.close();
  }
});

Deno.test("admin: a suspended user reads and leaves but cannot send, join or change the profile", async () => {
  const server = await adminServer();
  try {
    const root = await registerUser(server, "root");
    const bob = await registerUser(server, "bob");
    const room = await server.request("POST", `${V3}/createRoom`, {
      token: bob.accessToken,
      body: { preset: "public_chat" },
    });
    const roomId = room.body.room_id as string;
    const other = await server.request("POST", `${V3}/createRoom`, {
      token: root.accessToken,
      body: { preset: "public_chat" },
    });
    await server.request("PUT", `${V1}/admin/suspend/${bob.userId}`, {
      token: root.accessToken,
      body: { suspended: true },
    });

    const refused = [
      await server.request("PUT", `${V3}/rooms/${roomId}/send/m.room.message/t1`, {
        token: bob.accessToken,
        body: { msgtype: "m.text", body: "hi" },
      }),
      await server.request("PUT", `${V3}/rooms/${roomId}/state/m.room.topic/`, {
        token: bob.accessToken,
        body: { topic: "t" },
      }),
      await server.request("POST", `${V3}/join/${other.body.room_id}`, {
        token: bob.accessToken,
        body: {},
      }),
      await server.request("POST", `${V3}/createRoom`, { token: bob.accessToken, body: {} }),
      await server.request("PUT", `${V3}/profile/${bob.userId}/displayname`, {
        token: bob.accessToken,
        body: { displayname: "B" },
      }),
    ];
    for (const res of refused) {
      assertEquals([res.status, res.body.errcode], [403, "M_USER_SUSPENDED"]);
    }

    const read = await server.request("GET", `${V3}/rooms/${roomId}/messages?dir=b`, {
      token: bob.accessToken,
    });
    assertEquals(read.status, 200);
    const leave = await server.request("POST", `${V3}/rooms/${roomId}/leave`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(leave.status, 200);
  } finally {
    await server.close();
  }
});

Deno.test("admin: whois answers for oneself and for administrators only", async () => {
  const server = await adminServer();
  try {
    const root = await registerUser(server, "root");
    const alice = await registerUser(server, "alice");
    const own = await server.request("GET", `${V3}/admin/whois/${alice.userId}`, {
      token: alice.accessToken,
    });
    assertEquals(own.body.user_id, alice.userId);
    assertEquals(Object.keys(own.body.devices), [alice.deviceId]);
    const byAdmin = await server.request("GET", `${V3}/admin/whois/${alice.userId}`, {
      token: root.accessToken,
    });
    assertEquals(Object.keys(byAdmin.body.devices), [alice.deviceId]);
    const other = await server.request("GET", `${V3}/admin/whois/${root.userId}`, {
      token: alice.accessToken,
    });
    assertEquals([other.status, other.body.errcode], [403, "M_FORBIDDEN"]);
  } finally {
    await server.close();
  }
});

Deno.test("device activity: requests record last seen time and client, shown by devices and whois", async () => {
  let now = 1_000_000;
  const server = await startTestServer({}, { now: () => now });
  try {
    const alice = await registerUser(server, "alice");
    const whoami = () =>
      server.request("GET", `${V3}/account/whoami`, {
        token: alice.accessToken,
        headers: { "user-agent": "Element/1.0" },
      });
    await whoami();
    const device = async () =>
      (await server.request("GET", `${V3}/devices/${alice.deviceId}`, {
        token: alice.accessToken,
      })).body;
    assertEquals((await device()).last_seen_ts, 1_000_000);
    // Within the interval nothing is written again; after it, the new time is.
    now += 60_000;
    await whoami();
    assertEquals((await device()).last_seen_ts, 1_000_000);
    now += 5 * 60_000;
    await whoami();
    assertEquals((await device()).last_seen_ts, 1_360_000);
    const whois = await server.request("GET", `${V3}/admin/whois/${alice.userId}`, {
      token: alice.accessToken,
    });
    assertEquals(whois.body.devices[alice.deviceId].sessions[0].connections, [
      { last_seen: 1_360_000, user_agent: "Element/1.0" },
    ]);
  } finally {
    await server.close();
  }
});
