import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";

const V3 = "/_matrix/client/v3";

Deno.test("register with m.login.dummy, whoami, and r0 behaves like v3", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice", "secret-pw");
    assertEquals(alice.userId, "@alice:example.org:8448");
    assert(alice.accessToken.startsWith("tsr_"));
    const who = await server.request("GET", `${V3}/account/whoami`, { token: alice.accessToken });
    assertEquals(who.status, 200);
    assertEquals(who.body, { user_id: alice.userId, device_id: alice.deviceId, is_guest: false });
    const r0 = await server.request("GET", "/_matrix/client/r0/account/whoami", {
      token: alice.accessToken,
    });
    assertEquals(r0.body.user_id, alice.userId);
    // Token in the query string (matrix-nio style).
    const q = await server.request(
      "GET",
      `${V3}/account/whoami?access_token=${encodeURIComponent(alice.accessToken)}`,
    );
    assertEquals(q.status, 200);
  } finally {
    server.close();
  }
});

Deno.test("register: 401 flows without auth, then completes with the session", async () => {
  const server = await startTestServer();
  try {
    const first = await server.request("POST", `${V3}/register`, { body: { username: "bob" } });
    assertEquals(first.status, 401);
    assertEquals(first.body.flows, [{ stages: ["m.login.dummy"] }]);
    assertEquals(typeof first.body.session, "string");
    assertEquals(first.body.errcode, undefined);
    const second = await server.request("POST", `${V3}/register`, {
      body: {
        username: "bob",
        device_id: "MYDEVICE",
        initial_device_display_name: "Bob's phone",
        auth: { type: "m.login.dummy", session: first.body.session },
      },
    });
    assertEquals(second.status, 200);
    assertEquals(second.body.user_id, "@bob:example.org:8448");
    assertEquals(second.body.device_id, "MYDEVICE");
    // The session registered bob: it cannot register anyone else.
    const replay = await server.request("POST", `${V3}/register`, {
      body: { username: "bob2", auth: { type: "m.login.dummy", session: first.body.session } },
    });
    assertEquals(replay.status, 400);
    assertEquals(replay.body.errcode, "M_UNKNOWN");
  } finally {
    server.close();
  }
});

Deno.test("register: generated username, inhibit_login, taken and invalid names", async () => {
  const server = await startTestServer();
  try {
    const anon = await server.request("POST", `${V3}/register`, {
      body: { auth: { type: "m.login.dummy" } },
    });
    assertEquals(anon.status, 200);
    assert(/^@[a-z0-9]+:example\.org:8448$/.test(anon.body.user_id));
    const inhibited = await server.request("POST", `${V3}/register`, {
      body: { username: "carol", inhibit_login: true, auth: { type: "m.login.dummy" } },
    });
    assertEquals(inhibited.status, 200);
    assertEquals(inhibited.body.user_id, "@carol:example.org:8448");
    assertEquals(inhibited.body.access_token, undefined);
    const taken = await server.request("POST", `${V3}/register`, {
      body: { username: "Carol", auth: { type: "m.login.dummy" } },
    });
    assertEquals(taken.status, 400);
    assertEquals(taken.body.errcode, "M_USER_IN_USE");
    const invalid = await server.request("POST", `${V3}/register`, {
      body: { username: "bad name!", auth: { type: "m.login.dummy" } },
    });
    assertEquals(invalid.status, 400);
    assertEquals(invalid.body.errcode, "M_INVALID_USERNAME");
    const available = await server.request("GET", `${V3}/register/available?username=dave`);
    assertEquals(available.body, { available: true });
    const inUse = await server.request("GET", `${V3}/register/available?username=carol`);
    assertEquals(inUse.body.errcode, "M_USER_IN_USE");
    const badName = await server.request("GET", `${V3}/register/available?username=%C3%A9`);
    assertEquals(badName.body.errcode, "M_INVALID_USERNAME");
    const noName = await server.request("GET", `${V3}/register/available`);
    assertEquals(noName.status, 400);
  } finally {
    server.close();
  }
});

Deno.test("register: bad input is refused and writes nothing", async () => {
  const server = await startTestServer();
  try {
    const cases: [unknown, string][] = [
      ["{not json", "M_NOT_JSON"],
      [{ username: 5, auth: { type: "m.login.dummy" } }, "M_BAD_JSON"],
      [{ username: "erin", inhibit_login: "yes", auth: { type: "m.login.dummy" } }, "M_BAD_JSON"],
      [{ username: "erin", auth: "dummy" }, "M_BAD_JSON"],
      [{ username: "erin", auth: { type: "m.login.password" } }, "M_UNRECOGNIZED"],
      [{ username: "erin", device_id: "", auth: { type: "m.login.dummy" } }, "M_INVALID_PARAM"],
      [{ username: "erin", password: "", auth: { type: "m.login.dummy" } }, "M_WEAK_PASSWORD"],
    ];
    for (const [body, errcode] of cases) {
      const res = await server.request("POST", `${V3}/register`, { body });
      assertEquals(res.status, 400, JSON.stringify(body));
      assertEquals(res.body.errcode, errcode, JSON.stringify(body));
    }
    const available = await server.request("GET", `${V3}/register/available?username=erin`);
    assertEquals(available.body, { available: true });
    const guest = await server.request("POST", `${V3}/register?kind=guest`, { body: {} });
    assertEquals(guest.status, 403);
    assertEquals(guest.body.errcode, "M_GUEST_ACCESS_FORBIDDEN");
  } finally {
    server.close();
  }
});

Deno.test("register: closed and token modes", async () => {
  const closed = await startTestServer({ TESSERA_REGISTRATION: "closed" });
  try {
    const res = await closed.request("POST", `${V3}/register`, {
      body: { username: "x", auth: { type: "m.login.dummy" } },
    });
    assertEquals(res.status, 403);
    assertEquals(res.body.errcode, "M_FORBIDDEN");
  } finally {
    closed.close();
  }
  const server = await startTestServer({
    TESSERA_REGISTRATION: "token",
    TESSERA_REGISTRATION_TOKEN: "let-me-in",
  });
  try {
    const first = await server.request("POST", `${V3}/register`, { body: { username: "tok" } });
    assertEquals(first.status, 401);
    assertEquals(first.body.flows, [{ stages: ["m.login.registration_token"] }]);
    const dummy = await server.request("POST", `${V3}/register`, {
      body: { username: "tok", auth: { type: "m.login.dummy", session: first.body.session } },
    });
    assertEquals(dummy.status, 400);
    const wrong = await server.request("POST", `${V3}/register`, {
      body: {
        username: "tok",
        auth: { type: "m.login.registration_token", token: "nope", session: first.body.session },
      },
    });
    assertEquals(wrong.status, 401);
    assertEquals(wrong.body.errcode, "M_FORBIDDEN");
    assertEquals(wrong.body.session, first.body.session);
    const right = await server.request("POST", `${V3}/register`, {
      body: {
        username: "tok",
        auth: {
          type: "m.login.registration_token",
          token: "let-me-in",
          session: first.body.session,
        },
      },
    });
    assertEquals(right.status, 200);
    const validity = "/_matrix/client/v1/register/m.login.registration_token/validity";
    assertEquals((await server.request("GET", `${validity}?token=let-me-in`)).body, {
      valid: true,
    });
    assertEquals((await server.request("GET", `${validity}?token=other`)).body, { valid: false });
    assertEquals((await server.request("GET", validity)).status, 400);
  } finally {
    server.close();
  }
});

Deno.test("login: password with identifier and legacy user; flows; wrong password", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    await registerUser(server, "frank", "hunter2");
    const flows = await server.request("GET", `${V3}/login`);
    // With the OAuth pages on (the default), a browser can sign in: m.login.sso is offered too
    // (tests/routes/oauth/legacy_sso_test.ts checks each configuration).
    assertEquals(flows.body.flows.map((f: { type: string }) => f.type), [
      "m.login.password",
      "m.login.token",
      "m.login.sso",
    ]);
    const login = await server.request("POST", `${V3}/login`, {
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: "frank" },
        password: "hunter2",
        initial_device_display_name: "laptop",
      },
    });
    assertEquals(login.status, 200);
    assertEquals(login.body.user_id, "@frank:example.org:8448");
    assert(typeof login.body.device_id === "string" && login.body.device_id.length > 0);
    const legacy = await server.request("POST", `${V3}/login`, {
      body: { type: "m.login.password", user: "@frank:example.org:8448", password: "hunter2" },
    });
    assertEquals(legacy.status, 200);
    assert(legacy.body.access_token !== login.body.access_token);
    const wrong = await server.request("POST", `${V3}/login`, {
      body: { type: "m.login.password", user: "frank", password: "nope" },
    });
    assertEquals(wrong.status, 403);
    assertEquals(wrong.body.errcode, "M_FORBIDDEN");
    const nobody = await server.request("POST", `${V3}/login`, {
      body: { type: "m.login.password", user: "nobody", password: "nope" },
    });
    assertEquals(nobody.status, 403);
    const bad: [unknown, string][] = [
      ["nope", "M_NOT_JSON"],
      [{ identifier: { type: "m.id.user", user: "frank" }, password: "x" }, "M_MISSING_PARAM"],
      [{ type: "m.login.password", password: "hunter2" }, "M_MISSING_PARAM"],
      [{ type: "m.login.password", user: "frank" }, "M_MISSING_PARAM"],
      [{ type: "m.login.password", user: 7, password: "x" }, "M_BAD_JSON"],
      [{ type: "m.login.magic" }, "M_UNKNOWN"],
    ];
    for (const [body, errcode] of bad) {
      const res = await server.request("POST", `${V3}/login`, { body });
      assertEquals(res.status, 400, JSON.stringify(body));
      assertEquals(res.body.errcode, errcode, JSON.stringify(body));
    }
  } finally {
    server.close();
  }
});

Deno.test("whoami without or with a bad token", async () => {
  const server = await startTestServer();
  try {
    const missing = await server.request("GET", `${V3}/account/whoami`);
    assertEquals(missing.status, 401);
    assertEquals(missing.body.errcode, "M_MISSING_TOKEN");
    const unknown = await server.request("GET", `${V3}/account/whoami`, { token: "tsr_at_nope" });
    assertEquals(unknown.status, 401);
    assertEquals(unknown.body.errcode, "M_UNKNOWN_TOKEN");
  } finally {
    server.close();
  }
});
