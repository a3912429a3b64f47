import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";

const V3 = "/_matrix/client/v3";
const V1 = "/_matrix/client/v1";

type Server = Awaited<ReturnType<typeof startTestServer>>;

async function login(server: Server, user: string, password: string, extra = {}) {
  const res = await server.request("POST", `${V3}/login`, {
    body: { type: "m.login.password", identifier: { type: "m.id.user", user }, password, ...extra },
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

async function whoamiStatus(server: Server, token: string): Promise<number> {
  return (await server.request("GET", `${V3}/account/whoami`, { token })).status;
}

Deno.test("logout revokes the token and deletes the device; logout/all ends every session", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const a = await registerUser(server, "alice", "pw-alice");
    const b = await login(server, "alice", "pw-alice");
    const c = await login(server, "alice", "pw-alice");
    // Resolve once so the token sits in the in-memory cache: revocation must still be immediate.
    assertEquals(await whoamiStatus(server, b.access_token), 200);
    const out = await server.request("POST", `${V3}/logout`, { token: b.access_token });
    assertEquals(out.status, 200);
    assertEquals(await whoamiStatus(server, b.access_token), 401);
    const devices = await server.request("GET", `${V3}/devices`, { token: a.accessToken });
    assertEquals(
      devices.body.devices.map((d: { device_id: string }) => d.device_id).sort(),
      [a.deviceId, c.device_id].sort(),
    );
    const all = await server.request("POST", `${V3}/logout/all`, { token: c.access_token });
    assertEquals(all.status, 200);
    assertEquals(await whoamiStatus(server, a.accessToken), 401);
    assertEquals(await whoamiStatus(server, c.access_token), 401);
    const unauth = await server.request("POST", `${V3}/logout`);
    assertEquals(unauth.body.errcode, "M_MISSING_TOKEN");
  } finally {
    server.close();
  }
});

Deno.test("login with an existing device_id replaces that device's token", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    await registerUser(server, "bob", "pw-bob");
    const first = await login(server, "bob", "pw-bob", { device_id: "PHONE" });
    assertEquals(await whoamiStatus(server, first.access_token), 200);
    const second = await login(server, "bob", "pw-bob", { device_id: "PHONE" });
    assertEquals(second.device_id, "PHONE");
    assertEquals(await whoamiStatus(server, first.access_token), 401);
    assertEquals(await whoamiStatus(server, second.access_token), 200);
  } finally {
    server.close();
  }
});

Deno.test("refresh tokens: expiring access token, rotation, old refresh token refused", async () => {
  let now = 1_700_000_000_000;
  const server = await startTestServer({}, { ...FAST_HASHING, now: () => now });
  try {
    await registerUser(server, "carol", "pw-carol");
    const session = await login(server, "carol", "pw-carol", { refresh_token: true });
    assert(session.refresh_token.startsWith("tsr_rt_"));
    assert(session.expires_in_ms > 0);
    assertEquals(await whoamiStatus(server, session.access_token), 200);
    now += session.expires_in_ms + 1;
    assertEquals(await whoamiStatus(server, session.access_token), 401);
    // Expired, not revoked: a soft logout, so the client refreshes instead of signing out.
    const expired = await server.request("GET", `${V3}/account/whoami`, {
      token: session.access_token,
    });
    assertEquals(expired.body.errcode, "M_UNKNOWN_TOKEN");
    assertEquals(expired.body.soft_logout, true);
    const unknown = await server.request("GET", `${V3}/account/whoami`, { token: "tsr_at_nope" });
    assertEquals(unknown.body.soft_logout, false);
    const refreshed = await server.request("POST", `${V3}/refresh`, {
      body: { refresh_token: session.refresh_token },
    });
    assertEquals(refreshed.status, 200);
    assert(refreshed.body.refresh_token !== session.refresh_token);
    assertEquals(await whoamiStatus(server, refreshed.body.access_token), 200);
    const again = await server.request("POST", `${V3}/refresh`, {
      body: { refresh_token: session.refresh_token },
    });
    assertEquals(again.status, 401);
    assertEquals(again.body.errcode, "M_UNKNOWN_TOKEN");
    const bad = await server.request("POST", `${V3}/refresh`, { body: { refresh_token: 1 } });
    assertEquals(bad.body.errcode, "M_BAD_JSON");
    const missing = await server.request("POST", `${V3}/refresh`, { body: {} });
    assertEquals(missing.body.errcode, "M_MISSING_PARAM");
    // Registration may ask for a refresh token too.
    const reg = await server.request("POST", `${V3}/register`, {
      body: { username: "dora", refresh_token: true, auth: { type: "m.login.dummy" } },
    });
    assert(typeof reg.body.refresh_token === "string" && reg.body.expires_in_ms > 0);
  } finally {
    server.close();
  }
});

Deno.test("m.login.token from /v1/login/get_token: behind UIA, single use", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const erin = await registerUser(server, "erin", "pw-erin");
    const challenge = await server.request("POST", `${V1}/login/get_token`, {
      token: erin.accessToken,
      body: {},
    });
    assertEquals(challenge.status, 401);
    assertEquals(challenge.body.flows, [{ stages: ["m.login.password"] }]);
    const wrong = await server.request("POST", `${V1}/login/get_token`, {
      token: erin.accessToken,
      body: {
        auth: { type: "m.login.password", session: challenge.body.session, password: "no" },
      },
    });
    assertEquals(wrong.status, 401);
    assertEquals(wrong.body.errcode, "M_FORBIDDEN");
    const minted = await server.request("POST", `${V1}/login/get_token`, {
      token: erin.accessToken,
      body: {
        auth: {
          type: "m.login.password",
          session: challenge.body.session,
          identifier: { type: "m.id.user", user: "erin" },
          password: "pw-erin",
        },
      },
    });
    assertEquals(minted.status, 200);
    assert(minted.body.expires_in_ms > 0);
    const login = await server.request("POST", `${V3}/login`, {
      body: { type: "m.login.token", token: minted.body.login_token },
    });
    assertEquals(login.status, 200);
    assertEquals(login.body.user_id, erin.userId);
    const reuse = await server.request("POST", `${V3}/login`, {
      body: { type: "m.login.token", token: minted.body.login_token },
    });
    assertEquals(reuse.status, 403);
    assertEquals(reuse.body.errcode, "M_FORBIDDEN");
    const missing = await server.request("POST", `${V3}/login`, {
      body: { type: "m.login.token" },
    });
    assertEquals(missing.body.errcode, "M_MISSING_PARAM");
  } finally {
    server.close();
  }
});
