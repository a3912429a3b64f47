import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { FAST_HASHING, passwordAuth, registerUser } from "./client_harness.ts";

const V3 = "/_matrix/client/v3";

type Server = Awaited<ReturnType<typeof startTestServer>>;

async function loginStatus(server: Server, user: string, password: string) {
  return (await server.request("POST", `${V3}/login`, {
    body: { type: "m.login.password", user, password },
  })).status;
}

Deno.test("password change: UIA, other devices logged out unless asked not to", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice", "old-pw");
    const other = await server.request("POST", `${V3}/login`, {
      body: { type: "m.login.password", user: "alice", password: "old-pw" },
    });
    const challenge = await server.request("POST", `${V3}/account/password`, {
      token: alice.accessToken,
      body: { new_password: "new-pw" },
    });
    assertEquals(challenge.status, 401);
    assertEquals(challenge.body.flows, [{ stages: ["m.login.password"] }]);
    // Another user's identifier cannot authorise this user's password change: refused outright
    // (403, as Synapse answers), and the session stays usable by the right user.
    const someoneElse = await server.request("POST", `${V3}/account/password`, {
      token: alice.accessToken,
      body: { new_password: "new-pw", auth: passwordAuth("bob", "old-pw", challenge.body.session) },
    });
    assertEquals(someoneElse.status, 403);
    assertEquals(someoneElse.body.errcode, "M_FORBIDDEN");
    assertEquals(await loginStatus(server, "alice", "old-pw"), 200);
    const changed = await server.request("POST", `${V3}/account/password`, {
      token: alice.accessToken,
      body: {
        new_password: "new-pw",
        auth: passwordAuth("@alice:example.org:8448", "old-pw", challenge.body.session),
      },
    });
    assertEquals(changed.status, 200);
    assertEquals(await loginStatus(server, "alice", "old-pw"), 403);
    assertEquals(await loginStatus(server, "alice", "new-pw"), 200);
    const who = (token: string) => server.request("GET", `${V3}/account/whoami`, { token });
    assertEquals((await who(alice.accessToken)).status, 200);
    assertEquals((await who(other.body.access_token)).status, 401);

    const keep = await server.request("POST", `${V3}/login`, {
      body: { type: "m.login.password", user: "alice", password: "new-pw" },
    });
    const kept = await server.request("POST", `${V3}/account/password`, {
      token: alice.accessToken,
      body: {
        new_password: "newer-pw",
        logout_devices: false,
        auth: passwordAuth("alice", "new-pw"),
      },
    });
    assertEquals(kept.status, 200);
    assertEquals((await who(keep.body.access_token)).status, 200);
  } finally {
    server.close();
  }
});

Deno.test("password change and deactivate: bad input", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const bob = await registerUser(server, "bob", "pw");
    const cases: [string, unknown, number, string][] = [
      ["/account/password", "{", 400, "M_NOT_JSON"],
      ["/account/password", {}, 400, "M_MISSING_PARAM"],
      ["/account/password", { new_password: 5 }, 400, "M_BAD_JSON"],
      ["/account/password", { new_password: "x", logout_devices: "no" }, 400, "M_BAD_JSON"],
      ["/account/password", { new_password: "x", auth: [] }, 400, "M_BAD_JSON"],
      [
        "/account/password",
        { new_password: "x", auth: { type: "m.login.dummy" } },
        400,
        "M_UNRECOGNIZED",
      ],
      ["/account/deactivate", { erase: "yes" }, 400, "M_BAD_JSON"],
      [
        "/account/deactivate",
        { auth: { type: "m.login.password", password: 1 } },
        401,
        "M_BAD_JSON",
      ],
    ];
    for (const [path, body, status, errcode] of cases) {
      const res = await server.request("POST", `${V3}${path}`, { token: bob.accessToken, body });
      assertEquals(res.status, status, `${path} ${JSON.stringify(body)}`);
      assertEquals(res.body.errcode, errcode, `${path} ${JSON.stringify(body)}`);
    }
    const noToken = await server.request("POST", `${V3}/account/password`, {
      body: { new_password: "x" },
    });
    assertEquals(noToken.body.errcode, "M_MISSING_TOKEN");
    assertEquals(await loginStatus(server, "bob", "pw"), 200);
  } finally {
    server.close();
  }
});

Deno.test("deactivate: UIA, then no login, tokens gone, username stays taken", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const carol = await registerUser(server, "carol", "pw-carol");
    const challenge = await server.request("POST", `${V3}/account/deactivate`, {
      token: carol.accessToken,
      body: {},
    });
    assertEquals(challenge.status, 401);
    const done = await server.request("POST", `${V3}/account/deactivate`, {
      token: carol.accessToken,
      body: { auth: passwordAuth("carol", "pw-carol", challenge.body.session) },
    });
    assertEquals(done.status, 200);
    assertEquals(done.body.id_server_unbind_result, "no-support");
    const who = await server.request("GET", `${V3}/account/whoami`, { token: carol.accessToken });
    assertEquals(who.status, 401);
    assertEquals(await loginStatus(server, "carol", "pw-carol"), 403);
    const again = await server.request("POST", `${V3}/register`, {
      body: { username: "carol", auth: { type: "m.login.dummy" } },
    });
    assertEquals(again.body.errcode, "M_USER_IN_USE");
    assert(again.status === 400);
  } finally {
    server.close();
  }
});
