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
import { exchange, mintCode, postForm, refresh, registerClient, whoami } from "./grant_fixture.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

async function whoamiStatus(server: Server, token: string): Promise<number> {
  return (await whoami(server, token)).status;
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
      refresh(server, client.clientId, tokens.refresh_token),
      refresh(server, client.clientId, tokens.refresh_token),
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
    const rotated = await refresh(one, client.clientId, tokens.refresh_token);
    assertEquals(rotated.status, 200);
    assertEquals(await whoamiStatus(two, rotated.body.access_token), 200);
    const revoked = await postForm(two, OAUTH_ENDPOINTS.revocation, {
      token: rotated.body.access_token,
      client_id: client.clientId,
    });
    assertEquals(revoked.status, 200);
    assertEquals(await whoamiStatus(one, rotated.body.access_token), 401);
    // Reuse seen by the other process too: the spent token is in KV, not in a process.
    assertEquals(
      (await refresh(two, client.clientId, tokens.refresh_token)).body.error,
      "invalid_grant",
    );
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

    await server.deps.accounts.deactivations.deactivate(user.userId);
    assertEquals(await whoamiStatus(server, tokens.access_token), 401);
    assertEquals(
      (await refresh(server, client.clientId, tokens.refresh_token)).body.error,
      "invalid_grant",
    );
    const late = await exchange(server, client, pending.code, pending.verifier);
    assertEquals(late.status, 400);
    assertEquals(late.body.error, "invalid_grant");
    assertEquals(await server.deps.accounts.getDevice(user.userId, pending.deviceId), null);
  } finally {
    server.close();
  }
});
