/**
 * What the server says it offers matches what works: with password login off,
 * `m.change_password` says false and `POST /account/password` refuses (no sign-in would take
 * the password), and with it on both work as before; `/versions` lists v1.15 (the OAuth API,
 * or with it off auth_metadata's 404 M_UNRECOGNIZED) and nothing later.
 */
import { assert, assertEquals } from "../../assert.ts";
import { FAST_HASHING, passwordAuth, registerUser } from "../client_harness.ts";
import { startTestServer } from "../test_server.ts";

const V3 = "/_matrix/client/v3";

Deno.test("password login on: m.change_password is enabled and a password change works", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice", "old password 1");
    const caps = await server.request("GET", `${V3}/capabilities`, { token: alice.accessToken });
    assertEquals(caps.body.capabilities["m.change_password"], { enabled: true });
    const change = await server.request("POST", `${V3}/account/password`, {
      token: alice.accessToken,
      body: {
        new_password: "new password 2",
        auth: passwordAuth(alice.userId, "old password 1"),
      },
    });
    assertEquals(change.status, 200);
    const login = await server.request("POST", `${V3}/login`, {
      body: passwordAuth("alice", "new password 2"),
    });
    assertEquals(login.status, 200);
  } finally {
    server.close();
  }
});

Deno.test("password login off: m.change_password is false and a password change is refused", async () => {
  const server = await startTestServer({ TESSERA_PASSWORD_LOGIN: "off" }, FAST_HASHING);
  try {
    // An account made before password login was turned off still has its password.
    const alice = await registerUser(server, "alice", "old password 1");
    const caps = await server.request("GET", `${V3}/capabilities`, { token: alice.accessToken });
    assertEquals(caps.body.capabilities["m.change_password"], { enabled: false });
    for (const auth of [undefined, passwordAuth(alice.userId, "old password 1")]) {
      const change = await server.request("POST", `${V3}/account/password`, {
        token: alice.accessToken,
        body: { new_password: "new password 2", ...(auth ? { auth } : {}) },
      });
      assertEquals([change.status, change.body.errcode], [403, "M_FORBIDDEN"]);
    }
    // The reset flow without a token is refused the same way.
    const reset = await server.request("POST", `${V3}/account/password`, {
      body: { new_password: "new password 2" },
    });
    assertEquals([reset.status, reset.body.errcode], [403, "M_FORBIDDEN"]);
    // Nothing changed: the session is alive and its device list is as it was.
    const whoami = await server.request("GET", `${V3}/account/whoami`, {
      token: alice.accessToken,
    });
    assertEquals(whoami.status, 200);
  } finally {
    server.close();
  }
});

Deno.test("v1.15 is advertised with the OAuth API on, and off (auth_metadata then says M_UNRECOGNIZED)", async () => {
  for (const oauth of ["on", "off"]) {
    const server = await startTestServer({ TESSERA_OAUTH: oauth });
    try {
      const versions = await server.request("GET", "/_matrix/client/versions");
      assert(versions.body.versions.includes("v1.15"), `TESSERA_OAUTH=${oauth}`);
      assert(!versions.body.versions.includes("v1.16"), "v1.16 needs state_after sync");
      const metadata = await server.request("GET", "/_matrix/client/v1/auth_metadata");
      if (oauth === "on") {
        assertEquals(metadata.status, 200);
        assert(String(metadata.body.issuer).endsWith("/"), metadata.body.issuer);
        assert(metadata.body.registration_endpoint, "no registration_endpoint");
      } else {
        // The spec's answer of a v1.15 server without the OAuth API: clients use /login.
        assertEquals([metadata.status, metadata.body.errcode], [404, "M_UNRECOGNIZED"]);
      }
    } finally {
      server.close();
    }
  }
});
