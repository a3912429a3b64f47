/**
 * Registration over several user-interactive auth requests (SyTest 11register.pl) and the UIA
 * details of device deletion and deactivation (10apidoc/12device_management.pl, 13ui-auth.pl,
 * 14account/02deactivate.pl).
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";

const V3 = "/_matrix/client/v3";

type Server = Awaited<ReturnType<typeof startTestServer>>;

/** Start a registration and return its UIA session ID. */
async function startSession(server: Server, body: Record<string, unknown>): Promise<string> {
  const first = await server.request("POST", `${V3}/register`, { body });
  assertEquals(first.status, 401);
  assertEquals(first.body.completed, []);
  return first.body.session;
}

const dummy = (session: string) => ({ type: "m.login.dummy", session });

Deno.test("registration remembers the first request's parameters, password included", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const session = await startSession(server, {
      username: "Carol",
      password: "carol-pw",
      device_id: "XYZZY",
      initial_device_display_name: "display_name",
    });
    // The session keeps a hash, never the password itself.
    const stored = [];
    for await (const entry of server.kv.list({ prefix: [] })) stored.push(entry.value);
    assert(!JSON.stringify(stored).includes("carol-pw"));

    const done = await server.request("POST", `${V3}/register`, {
      body: { auth: dummy(session) },
    });
    assertEquals(done.status, 200);
    assertEquals(done.body.user_id, "@carol:example.org:8448");
    assertEquals(done.body.device_id, "XYZZY");
    const device = await server.request("GET", `${V3}/devices/XYZZY`, {
      token: done.body.access_token,
    });
    assertEquals(device.body.display_name, "display_name");
    const login = await server.request("POST", `${V3}/login`, {
      body: { type: "m.login.password", user: "carol", password: "carol-pw" },
    });
    assertEquals(login.status, 200);
  } finally {
    server.close();
  }
});

Deno.test("a retried registration answers with the same user, with or without a username", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    for (const username of [undefined, "dave"]) {
      const params = username === undefined ? { password: "pw-1" } : { username, password: "pw-1" };
      const session = await startSession(server, params);
      const first = await server.request("POST", `${V3}/register`, {
        body: { ...params, auth: dummy(session) },
      });
      assertEquals(first.status, 200);
      const again = await server.request("POST", `${V3}/register`, {
        body: { ...params, auth: dummy(session) },
      });
      assertEquals(again.status, 200);
      assertEquals(again.body.user_id, first.body.user_id);
      // A new login of the same account, not a second account.
      assert(again.body.access_token !== first.body.access_token);
      const who = await server.request("GET", `${V3}/account/whoami`, {
        token: again.body.access_token,
      });
      assertEquals(who.body.user_id, first.body.user_id);
      // The session cannot be turned to registering someone else.
      const other = await server.request("POST", `${V3}/register`, {
        body: { username: "mallory", password: "pw-1", auth: dummy(session) },
      });
      assertEquals(other.status, 400);
      assertEquals(
        (await server.request("GET", `${V3}/register/available?username=mallory`)).status,
        200,
      );
    }
  } finally {
    server.close();
  }
});

Deno.test("registration with inhibit_login returns no device or token, also from the session", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const session = await startSession(server, {
      username: "erin",
      password: "erin-pw",
      inhibit_login: true,
    });
    const done = await server.request("POST", `${V3}/register`, {
      body: { auth: dummy(session) },
    });
    assertEquals(done.status, 200);
    assertEquals(done.body.user_id, "@erin:example.org:8448");
    assertEquals("access_token" in done.body, false);
    assertEquals("device_id" in done.body, false);
    const login = await server.request("POST", `${V3}/login`, {
      body: { type: "m.login.password", user: "erin", password: "erin-pw" },
    });
    assertEquals(login.status, 200);
    // The account has exactly the device that login made.
    const devices = await server.request("GET", `${V3}/devices`, {
      token: login.body.access_token,
    });
    assertEquals(devices.body.devices.length, 1);
  } finally {
    server.close();
  }
});

Deno.test("UIA for device deletion: bound to the device, and to the user's own credentials", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice", "alice-pw");
    await registerUser(server, "eve", "eve-pw");
    for (const device_id of ["FIRST", "SECOND"]) {
      const login = await server.request("POST", `${V3}/login`, {
        body: { type: "m.login.password", user: "alice", password: "alice-pw", device_id },
      });
      assertEquals(login.status, 200);
    }
    const password = (user: string, pw: string, session?: string) => ({
      type: "m.login.password",
      identifier: { type: "m.id.user", user },
      password: pw,
      ...(session === undefined ? {} : { session }),
    });
    // Eve's (valid) credentials on alice's token: refused outright, the device stays.
    const stolen = await server.request("DELETE", `${V3}/devices/FIRST`, {
      token: alice.accessToken,
      body: { auth: password("@eve:example.org:8448", "eve-pw") },
    });
    assertEquals(stolen.status, 403);
    assertEquals(stolen.body.errcode, "M_FORBIDDEN");

    // A session started to delete FIRST cannot delete SECOND.
    const started = await server.request("DELETE", `${V3}/devices/FIRST`, {
      token: alice.accessToken,
      body: {},
    });
    assertEquals(started.status, 401);
    const switched = await server.request("DELETE", `${V3}/devices/SECOND`, {
      token: alice.accessToken,
      body: { auth: password(alice.userId, "alice-pw", started.body.session) },
    });
    assertEquals(switched.status, 403);
    const devices = await server.request("GET", `${V3}/devices`, { token: alice.accessToken });
    assertEquals(devices.body.devices.length, 3);

    const deleted = await server.request("DELETE", `${V3}/devices/FIRST`, {
      token: alice.accessToken,
      body: { auth: password(alice.userId, "alice-pw", started.body.session) },
    });
    assertEquals(deleted.status, 200);
    assertEquals(
      (await server.request("GET", `${V3}/devices/FIRST`, { token: alice.accessToken })).status,
      404,
    );
  } finally {
    server.close();
  }
});

Deno.test("deactivation with a wrong password: 401 with errcode, flows, params and completed", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const frank = await registerUser(server, "frank", "frank-pw");
    const wrong = await server.request("POST", `${V3}/account/deactivate`, {
      token: frank.accessToken,
      body: {
        auth: {
          type: "m.login.password",
          identifier: { type: "m.id.user", user: frank.userId },
          password: "not-it",
        },
      },
    });
    assertEquals(wrong.status, 401);
    assertEquals(wrong.body.errcode, "M_FORBIDDEN");
    for (const key of ["error", "params", "completed", "flows", "session"]) {
      assert(key in wrong.body, key);
    }
    assertEquals(wrong.body.completed, []);
  } finally {
    server.close();
  }
});
