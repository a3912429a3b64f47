/**
 * The grants over HTTP (routes/oauth/token_routes.ts, domain/oauth/oauth_grants.ts): codes are
 * minted with `oauthGrants.issueCode` as the consent page would, then exchanged, refreshed and
 * revoked at the real endpoints. Covers PKCE downgrade attempts, code replay, refresh-token
 * reuse, revocation of either token, the device grant with an injected clock, and ID tokens
 * verified against the published key set.
 */
import { assert, assertEquals } from "../../assert.ts";
import { createLocalJWKSet, jwtVerify } from "jose";
import { startTestServer } from "../test_server.ts";
import { registerUser } from "../client_harness.ts";
import { OAUTH_ENDPOINTS, oauthIssuer } from "../../../domain/oauth/oauth_paths.ts";
import {
  exchange,
  mintCode,
  postBody,
  postForm,
  refresh,
  registerClient,
  whoami,
} from "./grant_fixture.ts";
import { pkcePair } from "./oauth_client_fixture.ts";

const V3 = "/_matrix/client/v3";
const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

function assertMatch(actual: string, pattern: RegExp): void {
  assert(pattern.test(actual), `${JSON.stringify(actual)} does not match ${pattern}`);
}

/** A server with a clock the test moves. */
async function setup() {
  let now = Date.now();
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, { now: () => now });
  const user = await registerUser(server, "alice");
  const client = await registerClient(server, "app.example.org");
  return {
    server,
    user,
    client,
    advance: (ms: number) => (now += ms),
    [Symbol.dispose]: () => server.close(),
  };
}

Deno.test("authorization code: exchange, /sync with the token, ID token verifies against JWKS", async () => {
  using t = await setup();
  const { server, user, client } = t;
  const { code, verifier, request } = await mintCode(server, client, user.userId, {
    nonce: "n-0S6_WzA2Mj",
  });
  const res = await exchange(server, client, code, verifier);
  assertEquals(res.status, 200, JSON.stringify(res.body));
  assertEquals(res.headers.get("cache-control"), "no-store");
  assertEquals(res.body.token_type, "Bearer");
  assertEquals(res.body.expires_in, 300);
  assertEquals(res.body.scope, request.scope.scope);
  assert(typeof res.body.refresh_token === "string");

  const me = await whoami(server, res.body.access_token);
  assertEquals(me.status, 200);
  assertEquals(me.body.user_id, user.userId);
  assertEquals(me.body.device_id, request.scope.deviceId);
  const sync = await server.request("GET", `${V3}/sync?timeout=0`, {
    token: res.body.access_token,
  });
  assertEquals(sync.status, 200);
  assert(typeof sync.body.next_batch === "string");

  const device = await server.deps.accounts.getDevice(user.userId, request.scope.deviceId!);
  assertEquals(device?.oauthClientId, client.clientId);
  assertEquals(device?.displayName, client.clientName);

  const jwks = await server.app.request(OAUTH_ENDPOINTS.jwks);
  assertEquals(jwks.status, 200);
  const keySet = await jwks.json();
  assertEquals(keySet.keys.length, 1);
  assertEquals(keySet.keys[0].d, undefined, "the private part is never published");
  const { payload, protectedHeader } = await jwtVerify(
    res.body.id_token,
    createLocalJWKSet(keySet),
    { issuer: oauthIssuer(server.config), audience: client.clientId },
  );
  assertEquals(protectedHeader.alg, "ES256");
  assertEquals(payload.sub, user.userId);
  assertEquals(payload.nonce, "n-0S6_WzA2Mj");
  assert(typeof payload.auth_time === "number");
});

Deno.test("authorization code: without openid no ID token; a device scope binds that device", async () => {
  using t = await setup();
  const { server, user, client } = t;
  const { code, verifier } = await mintCode(server, client, user.userId, {
    scope: "urn:matrix:client:api:* urn:matrix:client:device:MYDEVICE",
  });
  const res = await exchange(server, client, code, verifier);
  assertEquals(res.status, 200);
  assertEquals(res.body.id_token, undefined);
  assertEquals(res.body.scope, "urn:matrix:client:api:* urn:matrix:client:device:MYDEVICE");
  assertEquals((await whoami(server, res.body.access_token)).body.device_id, "MYDEVICE");
});

Deno.test("PKCE downgrade attempts are refused, and each burns the code", async () => {
  using t = await setup();
  const { server, user, client } = t;

  // No verifier at all.
  const a = await mintCode(server, client, user.userId);
  const missing = await exchange(server, client, a.code, undefined);
  assertEquals(missing.status, 400);
  assertEquals(missing.body.error, "invalid_request");

  // A wrong verifier.
  const b = await mintCode(server, client, user.userId);
  const wrong = await exchange(server, client, b.code, pkcePair().verifier);
  assertEquals(wrong.body.error, "invalid_grant");
  // The right one afterwards: the code was spent by the failed attempt.
  assertEquals((await exchange(server, client, b.code, b.verifier)).body.error, "invalid_grant");

  // `plain`: the challenge itself sent as the verifier.
  const c = await mintCode(server, client, user.userId);
  const plain = await exchange(server, client, c.code, c.request.codeChallenge);
  assertEquals(plain.body.error, "invalid_grant");

  // The verifier of another authorization request.
  const d = await mintCode(server, client, user.userId);
  const e = await mintCode(server, client, user.userId);
  assertEquals((await exchange(server, client, d.code, e.verifier)).body.error, "invalid_grant");

  // A verifier outside RFC 7636's grammar (too short).
  const f = await mintCode(server, client, user.userId);
  assertEquals((await exchange(server, client, f.code, "short")).body.error, "invalid_grant");

  // None of these created a device beyond the registration's.
  assertEquals((await server.deps.accounts.listDevices(user.userId)).length, 1);
});

Deno.test("code replay: the second exchange fails and ends the session the first created", async () => {
  using t = await setup();
  const { server, user, client } = t;
  const { code, verifier, request } = await mintCode(server, client, user.userId);
  const first = await exchange(server, client, code, verifier);
  assertEquals(first.status, 200);
  assertEquals((await whoami(server, first.body.access_token)).status, 200);

  const second = await exchange(server, client, code, verifier);
  assertEquals(second.status, 400);
  assertEquals(second.body.error, "invalid_grant");
  assertEquals((await whoami(server, first.body.access_token)).status, 401);
  assertEquals(await server.deps.accounts.getDevice(user.userId, request.scope.deviceId!), null);
  assertEquals((await refresh(server, client.clientId, first.body.refresh_token)).status, 400);
});

Deno.test("code bound to its client and redirect URI; expires after 5 minutes", async () => {
  using t = await setup();
  const { server, user, client } = t;
  const other = await registerClient(server, "other.example.net");

  const a = await mintCode(server, client, user.userId);
  const injected = await exchange(server, other, a.code, a.verifier);
  assertEquals(injected.body.error, "invalid_grant", "another client's code");

  const b = await mintCode(server, client, user.userId);
  const redirect = await exchange(server, client, b.code, b.verifier, {
    redirect_uri: "https://app.example.org/callback/",
  });
  assertEquals(redirect.body.error, "invalid_grant", "redirect_uri must match exactly");

  const c = await mintCode(server, client, user.userId);
  const unknownClient = await exchange(server, client, c.code, c.verifier, {
    client_id: "nosuchclient",
  });
  assertEquals(unknownClient.status, 401);
  assertEquals(unknownClient.body.error, "invalid_client");

  const d = await mintCode(server, client, user.userId);
  t.advance(5 * 60_000 + 1);
  assertEquals((await exchange(server, client, d.code, d.verifier)).body.error, "invalid_grant");
  assertEquals((await exchange(server, client, "made-up", d.verifier)).body.error, "invalid_grant");
});

Deno.test("refresh: rotation; reuse of a spent token revokes the whole grant", async () => {
  using t = await setup();
  const { server, user, client } = t;
  const { code, verifier } = await mintCode(server, client, user.userId);
  const first = (await exchange(server, client, code, verifier)).body;

  const second = await refresh(server, client.clientId, first.refresh_token);
  assertEquals(second.status, 200, JSON.stringify(second.body));
  assertEquals(second.headers.get("cache-control"), "no-store");
  assert(second.body.refresh_token !== first.refresh_token);
  assertEquals(second.body.scope, first.scope);
  assertEquals((await whoami(server, first.access_token)).status, 401, "old access token dies");
  assertEquals((await whoami(server, second.body.access_token)).status, 200);

  // Another client presenting the current token gets nothing and ends nothing.
  const other = await registerClient(server, "other.example.net");
  assertEquals(
    (await refresh(server, other.clientId, second.body.refresh_token)).body.error,
    "invalid_grant",
  );
  assertEquals((await whoami(server, second.body.access_token)).status, 200);

  // The spent token again: refused, and the newest tokens die with the session.
  const reuse = await refresh(server, client.clientId, first.refresh_token);
  assertEquals(reuse.status, 400);
  assertEquals(reuse.body.error, "invalid_grant");
  assertEquals((await whoami(server, second.body.access_token)).status, 401);
  assertEquals(
    (await refresh(server, client.clientId, second.body.refresh_token)).body.error,
    "invalid_grant",
  );
});

Deno.test("refresh: an OAuth refresh token is refused at the legacy /refresh", async () => {
  using t = await setup();
  const { server, user, client } = t;
  const { code, verifier } = await mintCode(server, client, user.userId);
  const tokens = (await exchange(server, client, code, verifier)).body;
  const legacy = await server.request("POST", `${V3}/refresh`, {
    body: { refresh_token: tokens.refresh_token },
  });
  assertEquals(legacy.status, 401);
  assertEquals(legacy.body.errcode, "M_UNKNOWN_TOKEN");
  // Still usable where it belongs.
  assertEquals((await refresh(server, client.clientId, tokens.refresh_token)).status, 200);
  // And a legacy refresh token is not one the token endpoint takes.
  const login = await server.request("POST", `${V3}/register`, {
    body: { username: "bob", auth: { type: "m.login.dummy" }, refresh_token: true },
  });
  assertEquals(login.status, 200);
  const crossed = await refresh(server, client.clientId, login.body.refresh_token);
  assertEquals(crossed.body.error, "invalid_grant");
});

Deno.test("revocation: either token ends the session; unknown is fine; another client's refused", async () => {
  using t = await setup();
  const { server, user, client } = t;
  const other = await registerClient(server, "other.example.net");
  const revoke = (clientId: string, token: string, hint?: string) =>
    postForm(server, OAUTH_ENDPOINTS.revocation, {
      token,
      client_id: clientId,
      ...(hint !== undefined && { token_type_hint: hint }),
    });

  const a = await mintCode(server, client, user.userId);
  const byAccess = (await exchange(server, client, a.code, a.verifier)).body;
  const refused = await revoke(other.clientId, byAccess.access_token);
  assertEquals(refused.status, 400);
  assertEquals(refused.body.error, "unauthorized_client");
  assertEquals((await whoami(server, byAccess.access_token)).status, 200, "nothing revoked");
  // A wrong hint does not stop the look-up (RFC 7009 §2.1).
  assertEquals((await revoke(client.clientId, byAccess.access_token, "refresh_token")).status, 200);
  assertEquals((await whoami(server, byAccess.access_token)).status, 401);
  assertEquals(
    (await refresh(server, client.clientId, byAccess.refresh_token)).body.error,
    "invalid_grant",
  );

  const b = await mintCode(server, client, user.userId);
  const byRefresh = (await exchange(server, client, b.code, b.verifier)).body;
  assertEquals((await revoke(client.clientId, byRefresh.refresh_token)).status, 200);
  assertEquals((await whoami(server, byRefresh.access_token)).status, 401);

  assertEquals((await revoke(client.clientId, "no-such-token")).status, 200);
  assertEquals((await revoke(client.clientId, byRefresh.refresh_token)).status, 200, "twice");
  // A legacy login's token is no OAuth session's: unknown here, and left alone.
  assertEquals((await revoke(client.clientId, user.accessToken)).status, 200);
  assertEquals((await whoami(server, user.accessToken)).status, 200);
  assertEquals((await revoke("nosuchclient", "x")).status, 401);
});

Deno.test("device grant: pending, slow_down, approve, single use", async () => {
  using t = await setup();
  const { server, user, client } = t;
  const start = await postForm(server, OAUTH_ENDPOINTS.deviceAuthorization, {
    client_id: client.clientId,
    scope: "urn:matrix:client:api:* openid",
  });
  assertEquals(start.status, 200, JSON.stringify(start.body));
  const { device_code, user_code, verification_uri, verification_uri_complete } = start.body;
  assertMatch(user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
  assert(verification_uri.endsWith("/account/link"));
  assertEquals(verification_uri_complete, `${verification_uri}?code=${user_code}`);
  assertEquals(start.body.expires_in, 900);
  assertEquals(start.body.interval, 5);

  const poll = () =>
    postForm(server, OAUTH_ENDPOINTS.token, {
      grant_type: DEVICE_GRANT,
      device_code,
      client_id: client.clientId,
    });
  assertEquals((await poll()).body.error, "authorization_pending");
  assertEquals((await poll()).body.error, "slow_down", "polled again at once");
  t.advance(6_000);
  assertEquals((await poll()).body.error, "slow_down", "the interval grew to 10 s");
  // Each slow_down adds 5 s (RFC 8628 §3.5): 15 s now.
  t.advance(15_000);
  assertEquals((await poll()).body.error, "authorization_pending");

  // The link page finds it by the code typed in any case, with or without the dash.
  const typed = user_code.toLowerCase().replace("-", "");
  const pending = await server.deps.oauthGrants.deviceAuthorization(typed);
  assertEquals(pending?.status, "pending");
  assertEquals(pending?.clientId, client.clientId);
  assertEquals(await server.deps.oauthGrants.deviceAuthorization("BBBB-BBBB"), null);
  assert(await server.deps.oauthGrants.approveDevice(typed, user.userId));
  assertEquals(await server.deps.oauthGrants.denyDevice(user_code), false, "already decided");

  t.advance(15_000);
  const granted = await poll();
  assertEquals(granted.status, 200, JSON.stringify(granted.body));
  assertEquals((await whoami(server, granted.body.access_token)).body.user_id, user.userId);
  assert(typeof granted.body.id_token === "string");
  t.advance(10_000);
  assertEquals((await poll()).body.error, "invalid_grant", "the tokens are issued once");
});

Deno.test("device grant: deny, expiry, another client, a client without the grant", async () => {
  using t = await setup();
  const { server, client } = t;
  const startGrant = async (clientId = client.clientId) =>
    await postForm(server, OAUTH_ENDPOINTS.deviceAuthorization, {
      client_id: clientId,
      scope: "urn:matrix:client:api:*",
    });
  const poll = (device_code: string, clientId = client.clientId) =>
    postForm(server, OAUTH_ENDPOINTS.token, {
      grant_type: DEVICE_GRANT,
      device_code,
      client_id: clientId,
    });

  const denied = (await startGrant()).body;
  assert(await server.deps.oauthGrants.denyDevice(denied.user_code));
  assertEquals((await poll(denied.device_code)).body.error, "access_denied");
  assertEquals((await poll(denied.device_code)).body.error, "invalid_grant");

  const other = await registerClient(server, "other.example.net");
  const stolen = (await startGrant()).body;
  assertEquals((await poll(stolen.device_code, other.clientId)).body.error, "invalid_grant");

  const expiring = (await startGrant()).body;
  t.advance(15 * 60_000 + 1);
  assertEquals((await poll(expiring.device_code)).body.error, "expired_token");
  assertEquals(await server.deps.oauthGrants.approveDevice(expiring.user_code, "@x:y"), false);

  const codeOnly = await server.deps.oauthClients.register({
    client_uri: "https://plain.example.org/",
    application_type: "web",
    redirect_uris: ["https://plain.example.org/cb"],
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
  });
  const refused = await startGrant(codeOnly.clientId);
  assertEquals(refused.status, 400);
  assertEquals(refused.body.error, "unauthorized_client");
  const badScope = await postForm(server, OAUTH_ENDPOINTS.deviceAuthorization, {
    client_id: client.clientId,
    scope: "email",
  });
  assertEquals(badScope.body.error, "invalid_scope");
});

Deno.test("token endpoint: malformed requests answer OAuth errors, never a 500", async () => {
  using t = await setup();
  const { server, client } = t;
  const json = await postBody(server, OAUTH_ENDPOINTS.token, JSON.stringify({ grant_type: "x" }), {
    "content-type": "application/json",
  });
  assertEquals(json.status, 400);
  assertEquals(json.body.error, "invalid_request");
  const unsupported = await postForm(server, OAUTH_ENDPOINTS.token, {
    grant_type: "password",
    client_id: client.clientId,
  });
  assertEquals(unsupported.body.error, "unsupported_grant_type");
  const missing = await postForm(server, OAUTH_ENDPOINTS.token, { client_id: client.clientId });
  assertEquals(missing.body.error, "invalid_request");
  const twice = await postBody(
    server,
    OAUTH_ENDPOINTS.token,
    `grant_type=refresh_token&refresh_token=a&refresh_token=b&client_id=${client.clientId}`,
    { "content-type": "application/x-www-form-urlencoded" },
  );
  assertEquals(twice.body.error, "invalid_request");
  const proto = await postBody(
    server,
    OAUTH_ENDPOINTS.token,
    `__proto__=x&constructor=y&grant_type=hasOwnProperty&client_id=${client.clientId}`,
    { "content-type": "application/x-www-form-urlencoded" },
  );
  assertEquals(proto.body.error, "unsupported_grant_type");
  const notUtf8 = await server.app.request(OAUTH_ENDPOINTS.token, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new Uint8Array([0x67, 0x3d, 0xff, 0xfe]),
  });
  assertEquals(notUtf8.status, 400);
  const huge = await postForm(server, OAUTH_ENDPOINTS.token, { grant_type: "x".repeat(20_000) });
  assertEquals(huge.status, 413);
  const get = await server.app.request(OAUTH_ENDPOINTS.token);
  assertEquals(get.status, 405);
});

Deno.test("userinfo: the subject for an OAuth token with openid, refused otherwise", async () => {
  using t = await setup();
  const { server, user, client } = t;
  const userinfo = (token: string) =>
    server.app.request(OAUTH_ENDPOINTS.userinfo, { headers: { authorization: `Bearer ${token}` } });

  const withOpenid = await mintCode(server, client, user.userId);
  const a = (await exchange(server, client, withOpenid.code, withOpenid.verifier)).body;
  const ok = await userinfo(a.access_token);
  assertEquals(ok.status, 200);
  assertEquals((await ok.json()).sub, user.userId);

  const without = await mintCode(server, client, user.userId, {
    scope: "urn:matrix:client:api:*",
  });
  const b = (await exchange(server, client, without.code, without.verifier)).body;
  const noScope = await userinfo(b.access_token);
  assertEquals(noScope.status, 403);
  assertEquals((await noScope.json()).error, "insufficient_scope");

  const legacy = await userinfo(user.accessToken);
  assertEquals(legacy.status, 401);
  assertMatch(legacy.headers.get("www-authenticate") ?? "", /invalid_token/);
  await legacy.body?.cancel();
  const none = await server.app.request(OAUTH_ENDPOINTS.userinfo);
  assertEquals(none.status, 401);
  await none.body?.cancel();

  // An expired access token (5 minutes) is refused rather than treated as a soft logout.
  t.advance(5 * 60_000 + 1);
  const expired = await userinfo(a.access_token);
  assertEquals(expired.status, 401);
  await expired.body?.cancel();
});

Deno.test("reuse of an old session's token spares a later grant that rebound the device ID", async () => {
  using t = await setup();
  const { server, user, client } = t;
  const scope = "urn:matrix:client:api:* urn:matrix:client:device:SAMEDEVICE";
  const a = await mintCode(server, client, user.userId, { scope });
  const first = (await exchange(server, client, a.code, a.verifier)).body;
  const rotated = (await refresh(server, client.clientId, first.refresh_token)).body;
  assert(typeof rotated.access_token === "string");

  // A new grant for the same device ID: the device now belongs to the new session.
  const b = await mintCode(server, client, user.userId, { scope });
  const second = (await exchange(server, client, b.code, b.verifier)).body;
  assertEquals((await whoami(server, rotated.access_token)).status, 401, "rebinding replaced it");

  // The first session's spent refresh token and its code replayed: the new session stays.
  assertEquals(
    (await refresh(server, client.clientId, first.refresh_token)).body.error,
    "invalid_grant",
  );
  assertEquals((await exchange(server, client, a.code, a.verifier)).body.error, "invalid_grant");
  assertEquals((await whoami(server, second.access_token)).status, 200);
  assertEquals((await refresh(server, client.clientId, second.refresh_token)).status, 200);
});

Deno.test("token endpoint: rate limited per address with M_LIMIT_EXCEEDED", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "on" });
  try {
    const from = (hostname: string) =>
      server.app.request(OAUTH_ENDPOINTS.token, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "grant_type=refresh_token&refresh_token=x&client_id=nosuchclient",
      }, { remoteAddr: { hostname } });
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) {
      const res = await from("192.0.2.1");
      statuses.push(res.status);
      if (res.status === 429) {
        const body = await res.json();
        assertEquals(body.errcode, "M_LIMIT_EXCEEDED");
        assert(body.retry_after_ms > 0);
        break;
      }
      await res.body?.cancel();
    }
    assertEquals(statuses.at(-1), 429);
    assert(statuses.slice(0, -1).every((s) => s === 401), "refused as an unknown client before");
    const other = await from("192.0.2.2");
    assertEquals(other.status, 401, "another address has its own bucket");
    await other.body?.cancel();
  } finally {
    server.close();
  }
});
