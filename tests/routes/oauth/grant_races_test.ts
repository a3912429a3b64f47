/**
 * The grants under races and across processes: a code exchanged twice at once, a refresh token
 * rotated twice at once, two servers on one KV (one signing key, a session refreshed and
 * revoked through either), and grants for accounts that stopped being usable.
 */
import { assert, assertEquals } from "../../assert.ts";
import { createLocalJWKSet, jwtVerify } from "jose";
import { startTestServer } from "../test_server.ts";
import { registerUser } from "../client_harness.ts";
import { OAUTH_ENDPOINTS, oauthIssuer } from "../../../domain/oauth/oauth_paths.ts";
import { parseScope } from "../../../domain/oauth/scopes.ts";
import type { OAuthClient } from "../../../domain/oauth/oauth_types.ts";
import { encodeBase64UrlUnpadded } from "../../../domain/protocol/base64.ts";

const V3 = "/_matrix/client/v3";
type Server = Awaited<ReturnType<typeof startTestServer>>;

function registerClient(server: Server): Promise<OAuthClient> {
  return server.deps.oauthClients.register({
    client_uri: "https://app.example.org/",
    application_type: "web",
    redirect_uris: ["https://app.example.org/cb"],
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
  });
}

async function form(server: Server, path: string, fields: Record<string, string>) {
  const res = await server.app.request(path, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields).toString(),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function mintCode(server: Server, client: OAuthClient, userId: string) {
  const verifier = encodeBase64UrlUnpadded(crypto.getRandomValues(new Uint8Array(32)));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  const scope = parseScope("urn:matrix:client:api:* openid");
  const code = await server.deps.oauthGrants.issueCode({
    clientId: client.clientId,
    redirectUri: client.redirectUris[0],
    responseMode: "query",
    scope,
    codeChallenge: encodeBase64UrlUnpadded(new Uint8Array(digest)),
  }, userId);
  return { code, verifier, deviceId: scope.deviceId! };
}

function exchange(server: Server, client: OAuthClient, code: string, verifier: string) {
  return form(server, OAUTH_ENDPOINTS.token, {
    grant_type: "authorization_code",
    code,
    code_verifier: verifier,
    client_id: client.clientId,
    redirect_uri: client.redirectUris[0],
  });
}

function refresh(server: Server, client: OAuthClient, refreshToken: string) {
  return form(server, OAUTH_ENDPOINTS.token, {
    grant_type: "refresh_token",
    refresh_token: refreshToken,
    client_id: client.clientId,
  });
}

async function whoamiStatus(server: Server, token: string): Promise<number> {
  return (await server.request("GET", `${V3}/account/whoami`, { token })).status;
}

Deno.test("a code exchanged twice at once: at most one answer, and no session survives", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const user = await registerUser(server, "alice");
    const client = await registerClient(server);
    for (let round = 0; round < 5; round++) {
      const { code, verifier, deviceId } = await mintCode(server, client, user.userId);
      const answers = await Promise.all([
        exchange(server, client, code, verifier),
        exchange(server, client, code, verifier),
      ]);
      const granted = answers.filter((a) => a.status === 200);
      assert(granted.length <= 1, "one code, at most one set of tokens");
      for (const a of answers.filter((a) => a.status !== 200)) {
        assertEquals(a.body.error, "invalid_grant");
      }
      for (const a of granted) assertEquals(await whoamiStatus(server, a.body.access_token), 401);
      assertEquals(await server.deps.accounts.getDevice(user.userId, deviceId), null);
    }
  } finally {
    server.close();
  }
});

Deno.test("a refresh token rotated twice at once: one rotation at most, then the grant ends", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const user = await registerUser(server, "alice");
    const client = await registerClient(server);
    const { code, verifier, deviceId } = await mintCode(server, client, user.userId);
    const tokens = (await exchange(server, client, code, verifier)).body;
    const answers = await Promise.all([
      refresh(server, client, tokens.refresh_token),
      refresh(server, client, tokens.refresh_token),
    ]);
    assert(answers.filter((a) => a.status === 200).length <= 1);
    // The loser presented a spent token: reuse, which ends the session the winner continued.
    assert(answers.some((a) => a.body.error === "invalid_grant"));
    for (const a of answers.filter((a) => a.status === 200)) {
      assertEquals(await whoamiStatus(server, a.body.access_token), 401);
    }
    assertEquals(await server.deps.accounts.getDevice(user.userId, deviceId), null);
  } finally {
    server.close();
  }
});

Deno.test("two processes on one KV: one signing key; refresh and revoke through either", async () => {
  using kv = await Deno.openKv(":memory:");
  const env = { TESSERA_RATE_LIMITS: "off" };
  const one = await startTestServer(env, {}, kv);
  const two = await startTestServer(env, {}, kv);
  try {
    const user = await registerUser(one, "alice");
    const client = await registerClient(one);
    // Both processes create their key at once; create-if-absent leaves one.
    const [jwksOne, jwksTwo] = await Promise.all([
      one.deps.oauthGrants.jwks(),
      two.deps.oauthGrants.jwks(),
    ]);
    assertEquals(jwksOne, jwksTwo);

    const { code, verifier } = await mintCode(one, client, user.userId);
    const tokens = (await exchange(two, client, code, verifier)).body;
    await jwtVerify(tokens.id_token, createLocalJWKSet(jwksOne), {
      issuer: oauthIssuer(one.config),
      audience: client.clientId,
    });
    const rotated = await refresh(one, client, tokens.refresh_token);
    assertEquals(rotated.status, 200);
    assertEquals(await whoamiStatus(two, rotated.body.access_token), 200);
    const revoked = await form(two, OAUTH_ENDPOINTS.revocation, {
      token: rotated.body.access_token,
      client_id: client.clientId,
    });
    assertEquals(revoked.status, 200);
    assertEquals(await whoamiStatus(one, rotated.body.access_token), 401);
    // Reuse seen by the other process too: the spent token is in KV, not in a process.
    assertEquals((await refresh(two, client, tokens.refresh_token)).body.error, "invalid_grant");
  } finally {
    one.close();
    two.close();
  }
});

Deno.test("grants for a deactivated account are refused; its OAuth sessions end with it", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const user = await registerUser(server, "alice");
    const client = await registerClient(server);
    const live = await mintCode(server, client, user.userId);
    const tokens = (await exchange(server, client, live.code, live.verifier)).body;
    const pending = await mintCode(server, client, user.userId);

    await server.deps.accounts.deactivate(user.userId);
    assertEquals(await whoamiStatus(server, tokens.access_token), 401);
    assertEquals((await refresh(server, client, tokens.refresh_token)).body.error, "invalid_grant");
    const late = await exchange(server, client, pending.code, pending.verifier);
    assertEquals(late.status, 400);
    assertEquals(late.body.error, "invalid_grant");
    assertEquals(await server.deps.accounts.getDevice(user.userId, pending.deviceId), null);
  } finally {
    server.close();
  }
});
