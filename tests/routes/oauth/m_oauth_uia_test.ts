/**
 * The `m.oauth` user-interactive auth stage (spec v1.17) on /keys/device_signing/upload: an
 * OAuth session replacing its cross-signing keys is sent to the account page, and its retry
 * passes only with the user's unexpired approval, which it uses up. Password sessions keep
 * m.login.password, and an approval lets none of them skip it.
 */
import { assert, assertEquals } from "../../assert.ts";
import { startTestServer } from "../test_server.ts";
import {
  FAST_HASHING,
  passwordAuth,
  type RegisteredUser,
  registerUser,
} from "../client_harness.ts";
import {
  newCrossSigning,
  type TestCrossSigning,
} from "../../domain/e2ee/cross_signing_fixtures.ts";
import { OAUTH_PAGES, oauthUrl } from "../../../domain/oauth/oauth_paths.ts";

const V3 = "/_matrix/client/v3";
type Server = Awaited<ReturnType<typeof startTestServer>>;

/** An OAuth session of an existing user, as the token endpoint's grants start one. */
async function oauthSession(server: Server, user: RegisteredUser, deviceId: string) {
  const issued = await server.deps.accounts.oauthSessions.start({
    userId: user.userId,
    deviceId,
    clientId: "client-1",
    sessionId: crypto.randomUUID(),
    scope: `urn:matrix:client:api:* urn:matrix:client:device:${deviceId}`,
    displayName: "Test client",
  });
  return { userId: user.userId, deviceId, accessToken: issued.accessToken };
}

function uploadSigning(
  server: Server,
  user: RegisteredUser,
  cross: TestCrossSigning,
  auth?: unknown,
) {
  return server.request("POST", `${V3}/keys/device_signing/upload`, {
    token: user.accessToken,
    body: {
      master_key: cross.upload.master,
      self_signing_key: cross.upload.self_signing,
      user_signing_key: cross.upload.user_signing,
      ...(auth === undefined ? {} : { auth }),
    },
  });
}

async function masterKeyOf(server: Server, user: RegisteredUser) {
  const query = await server.request("POST", `${V3}/keys/query`, {
    token: user.accessToken,
    body: { device_keys: { [user.userId]: [] } },
  });
  return query.body.master_keys[user.userId];
}

Deno.test("m.oauth: an OAuth session's reset waits for the account page's approval", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice", "correct horse");
    const session = await oauthSession(server, alice, "OAUTHDEV");
    const first = await newCrossSigning(alice.userId);
    // No keys yet: the first upload needs no auth, from an OAuth session too.
    assertEquals((await uploadSigning(server, session, first)).status, 200);

    const second = await newCrossSigning(alice.userId);
    const challenge = await uploadSigning(server, session, second);
    assertEquals(challenge.status, 401);
    assertEquals(challenge.body.flows, [{ stages: ["m.oauth"] }]);
    const url = `${oauthUrl(server.config, OAUTH_PAGES.account)}` +
      "?action=org.matrix.cross_signing_reset";
    assertEquals(challenge.body.params, { "m.oauth": { url } });
    assert(new URL(url).protocol.startsWith("http"));
    assertEquals(challenge.body.errcode, undefined);
    const uiaSession = challenge.body.session;

    // Not approved yet: the challenge again, with the failure, and the session still usable.
    const early = await uploadSigning(server, session, second, {
      type: "m.oauth",
      session: uiaSession,
    });
    assertEquals([early.status, early.body.errcode], [401, "M_FORBIDDEN"]);
    assertEquals(early.body.session, uiaSession);
    assertEquals(early.body.params, { "m.oauth": { url } });
    // A password is not what an OAuth session is asked for.
    const password = await uploadSigning(
      server,
      session,
      second,
      passwordAuth(alice.userId, "correct horse", uiaSession),
    );
    assertEquals([password.status, password.body.errcode], [400, "M_UNRECOGNIZED"]);
    // Another user's approval is not alice's.
    const bob = await registerUser(server, "bob");
    await server.deps.crossSigningResetApprovals.approve(bob.userId);
    const stillEarly = await uploadSigning(server, session, second, {
      type: "m.oauth",
      session: uiaSession,
    });
    assertEquals(stillEarly.status, 401);
    assertEquals(await masterKeyOf(server, alice), first.upload.master);

    await server.deps.crossSigningResetApprovals.approve(alice.userId);
    const approved = await uploadSigning(server, session, second, {
      type: "m.oauth",
      session: uiaSession,
    });
    assertEquals([approved.status, approved.body], [200, {}]);
    assertEquals(await masterKeyOf(server, alice), second.upload.master);

    // The approval was used up: the next reset needs another one.
    const third = await newCrossSigning(alice.userId);
    const again = await uploadSigning(server, session, third);
    assertEquals(again.status, 401);
    const unapproved = await uploadSigning(server, session, third, {
      type: "m.oauth",
      session: again.body.session,
    });
    assertEquals(unapproved.status, 401);
    // A retry carrying only the session is read as the m.oauth stage.
    await server.deps.crossSigningResetApprovals.approve(alice.userId);
    const sessionOnly = await uploadSigning(server, session, third, {
      session: again.body.session,
    });
    assertEquals(sessionOnly.status, 200);
    assertEquals(await masterKeyOf(server, alice), third.upload.master);
  } finally {
    server.close();
  }
});

Deno.test("m.oauth: password sessions keep m.login.password, approval or not", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice", "correct horse");
    const first = await newCrossSigning(alice.userId);
    assertEquals((await uploadSigning(server, alice, first)).status, 200);
    await server.deps.crossSigningResetApprovals.approve(alice.userId);

    const second = await newCrossSigning(alice.userId);
    const challenge = await uploadSigning(server, alice, second);
    assertEquals(challenge.status, 401);
    assertEquals(challenge.body.flows, [{ stages: ["m.login.password"] }]);
    const oauthTry = await uploadSigning(server, alice, second, {
      type: "m.oauth",
      session: challenge.body.session,
    });
    assertEquals([oauthTry.status, oauthTry.body.errcode], [400, "M_UNRECOGNIZED"]);
    // A session-only retry is no stage for a password session: the challenge again.
    const bare = await uploadSigning(server, alice, second, { session: challenge.body.session });
    assertEquals(bare.status, 401);
    assertEquals(await masterKeyOf(server, alice), first.upload.master);
    const done = await uploadSigning(
      server,
      alice,
      second,
      passwordAuth(alice.userId, "correct horse", challenge.body.session),
    );
    assertEquals(done.status, 200);
    // The approval is still there for an OAuth session: the password session did not use it.
    assert(await server.deps.crossSigningResetApprovals.pending(alice.userId));
  } finally {
    server.close();
  }
});

// UIA sessions are bound to the user and the action, not the device: what authorises the
// OAuth session's stage is the approval, whichever of the user's sessions started the UIA.
Deno.test("m.oauth: the approval, not the UIA session's origin, authorises the stage", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice", "correct horse");
    const session = await oauthSession(server, alice, "OAUTHDEV");
    const first = await newCrossSigning(alice.userId);
    assertEquals((await uploadSigning(server, alice, first)).status, 200);
    const second = await newCrossSigning(alice.userId);
    const legacyChallenge = await uploadSigning(server, alice, second);
    await server.deps.crossSigningResetApprovals.approve(alice.userId);
    // The OAuth session presents the password session's UIA session with m.oauth: the
    // approval authorises it (same user, same action), and the keys change once.
    const crossed = await uploadSigning(server, session, second, {
      type: "m.oauth",
      session: legacyChallenge.body.session,
    });
    assertEquals(crossed.status, 200);
    assertEquals(await masterKeyOf(server, alice), second.upload.master);
    assertEquals(await server.deps.crossSigningResetApprovals.pending(alice.userId), null);
  } finally {
    server.close();
  }
});

Deno.test("m.oauth: an approval made in one process is taken by another, once", async () => {
  const kv = await Deno.openKv(":memory:");
  const one = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING, kv);
  const two = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, FAST_HASHING, kv);
  try {
    const alice = await registerUser(one, "alice", "correct horse");
    const session = await oauthSession(one, alice, "OAUTHDEV");
    assertEquals(
      (await uploadSigning(two, session, await newCrossSigning(alice.userId))).status,
      200,
    );
    const second = await newCrossSigning(alice.userId);
    const challenge = await uploadSigning(two, session, second);
    assertEquals(challenge.status, 401);
    await one.deps.crossSigningResetApprovals.approve(alice.userId);
    const auth = { type: "m.oauth", session: challenge.body.session };
    const [a, b] = await Promise.all([
      uploadSigning(one, session, second, auth),
      uploadSigning(two, session, second, auth),
    ]);
    // One retry takes the approval and the UIA session; the other finds neither (or, if it
    // lands after the first committed, the same keys again, which need no auth).
    const statuses = [a.status, b.status];
    assert(statuses.includes(200), JSON.stringify([a.body, b.body]));
    assert(statuses.every((s) => s === 200 || s === 400 || s === 401), JSON.stringify(statuses));
    assertEquals(await masterKeyOf(one, alice), second.upload.master);
    assertEquals(await one.deps.crossSigningResetApprovals.pending(alice.userId), null);
    // A third key set needs a new approval in whichever process.
    const third = await newCrossSigning(alice.userId);
    const again = await uploadSigning(one, session, third);
    const retry = await uploadSigning(two, session, third, {
      type: "m.oauth",
      session: again.body.session,
    });
    assertEquals(retry.status, 401);
  } finally {
    one.close();
    two.close();
    kv.close();
  }
});
