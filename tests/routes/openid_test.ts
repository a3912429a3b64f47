/**
 * OpenID over HTTP: a user's token, traded at the federation userinfo endpoint for the user's
 * ID; unknown, expired and foreign requests refused; the token opens nothing else.
 */
import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const USERINFO = "/_matrix/federation/v1/openid/userinfo";

Deno.test("openid: request_token, then userinfo names the user; bad tokens are 401", async () => {
  let now = Date.now();
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, { now: () => now });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const path = `/_matrix/client/v3/user/${encodeURIComponent(alice.userId)}/openid/request_token`;
    const res = await server.request("POST", path, { token: alice.accessToken, body: {} });
    assertEquals(res.status, 200);
    assertEquals(res.body.token_type, "Bearer");
    assertEquals(res.body.matrix_server_name, "example.org:8448");
    assertEquals(res.body.expires_in, 3600);
    const token: string = res.body.access_token;

    const info = await server.request("GET", `${USERINFO}?access_token=${token}`);
    assertEquals([info.status, info.body], [200, { sub: alice.userId }]);
    // r0 and the unstable prefix, as Synapse serves them.
    const r0 = await server.request(
      "POST",
      `/_matrix/client/r0/user/${encodeURIComponent(alice.userId)}/openid/request_token`,
      { token: alice.accessToken, body: {} },
    );
    assertEquals(r0.status, 200);

    // Not an access token: it opens no client endpoint.
    const whoami = await server.request("GET", "/_matrix/client/v3/account/whoami", { token });
    assertEquals(whoami.status, 401);
    // Only for oneself.
    const foreign = await server.request("POST", path, { token: bob.accessToken, body: {} });
    assertEquals([foreign.status, foreign.body.errcode], [403, "M_FORBIDDEN"]);

    for (const query of ["", "?access_token=an/invalid/token", `?access_token=${token}x`]) {
      const bad = await server.request("GET", `${USERINFO}${query}`);
      assertEquals([bad.status, bad.body.errcode], [401, "M_UNKNOWN_TOKEN"], query);
    }
    now += 3_600_001;
    const expired = await server.request("GET", `${USERINFO}?access_token=${token}`);
    assertEquals([expired.status, expired.body.errcode], [401, "M_UNKNOWN_TOKEN"]);
    assert(!JSON.stringify(expired.body).includes(alice.userId));
  } finally {
    server.close();
  }
});
