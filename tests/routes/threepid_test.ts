/**
 * Third-party identifiers over real HTTP routes, with a real SMTP server and an HTTPS identity
 * server on loopback (tests/routes/threepid_fixtures.ts): email validation by link, adding,
 * listing and deleting addresses, login and registration by email, password reset, binding and
 * unbinding at the identity server, and deactivation unbinding everything.
 */
import { assert, assertEquals } from "../assert.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import {
  type FakeIdentityServer,
  linkIn,
  type Mailbox,
  startIdentityServer,
  startMailbox,
} from "./threepid_fixtures.ts";

const V3 = "/_matrix/client/v3";

async function setup(extraEnv: Record<string, string> = {}) {
  const mailbox = await startMailbox();
  const idServer = await startIdentityServer();
  const server = await startTestServer({
    TESSERA_SMTP_URL: `smtp://127.0.0.1:${mailbox.port}`,
    TESSERA_SMTP_FROM: "Tessera <noreply@example.org>",
    TESSERA_OUTBOUND_ALLOW_PRIVATE: "on",
    TESSERA_OUTBOUND_TLS_VERIFY: "off",
    ...extraEnv,
  }, FAST_HASHING);
  const close = async () => {
    server.close();
    await mailbox.close();
    await idServer.close();
  };
  return { server, mailbox, idServer, close };
}

type Server = Awaited<ReturnType<typeof setup>>["server"];

/** Request a token at `path`, follow the mailed link, and return the session's credentials. */
async function validateEmail(
  server: Server,
  mailbox: Mailbox,
  path: string,
  email: string,
  clientSecret = `secret${crypto.randomUUID().slice(0, 8)}.=_-`,
) {
  const mail = mailbox.nextMailTo(email.toLowerCase());
  const res = await server.request("POST", `${V3}${path}`, {
    body: { client_secret: clientSecret, email, send_attempt: 1 },
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  const sid = res.body.sid as string;
  const followed = await server.request("GET", linkIn(await mail));
  assertEquals(followed.status, 200);
  return { sid, clientSecret };
}

Deno.test("3pid: an address validated by mail is added with UIA, listed, logs in, and is deleted", async () => {
  const { server, mailbox, close } = await setup();
  try {
    const alice = await registerUser(server, "alice", "pw-alice");
    const token = alice.accessToken;
    assertEquals((await server.request("GET", `${V3}/account/3pid`, { token })).body, {
      threepids: [],
    });
    const caps = await server.request("GET", `${V3}/capabilities`, { token });
    assertEquals(caps.body.capabilities["m.3pid_changes"], { enabled: true });
    const { sid, clientSecret } = await validateEmail(
      server,
      mailbox,
      "/account/3pid/email/requestToken",
      "Alice@Example.org",
    );
    // The mail went to the canonical (lower-cased) address, from the configured sender.
    assert(mailbox.mails[0].to.includes("alice@example.org"));
    assert(/From: Tessera <noreply@example.org>/i.test(mailbox.mails[0].raw));

    const first = await server.request("POST", `${V3}/account/3pid/add`, {
      token,
      body: { sid, client_secret: clientSecret },
    });
    assertEquals(first.status, 401);
    const added = await server.request("POST", `${V3}/account/3pid/add`, {
      token,
      body: {
        sid,
        client_secret: clientSecret,
        auth: { type: "m.login.password", session: first.body.session, password: "pw-alice" },
      },
    });
    assertEquals(added.status, 200, JSON.stringify(added.body));
    const listed = await server.request("GET", `${V3}/account/3pid`, { token });
    assertEquals(listed.body.threepids.length, 1);
    assertEquals(listed.body.threepids[0].medium, "email");
    assertEquals(listed.body.threepids[0].address, "alice@example.org");
    assert(typeof listed.body.threepids[0].validated_at === "number");
    assert(typeof listed.body.threepids[0].added_at === "number");

    // Login by m.id.thirdparty, and by the r0 form with medium and address.
    const login = await server.request("POST", `${V3}/login`, {
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.thirdparty", medium: "email", address: "ALICE@example.org" },
        password: "pw-alice",
      },
    });
    assertEquals(login.status, 200, JSON.stringify(login.body));
    assertEquals(login.body.user_id, alice.userId);
    const legacy = await server.request("POST", `${V3}/login`, {
      body: {
        type: "m.login.password",
        medium: "email",
        address: "alice@example.org",
        password: "pw-alice",
      },
    });
    assertEquals(legacy.body.user_id, alice.userId);
    const wrong = await server.request("POST", `${V3}/login`, {
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.thirdparty", medium: "email", address: "nobody@example.org" },
        password: "pw-alice",
      },
    });
    assertEquals(wrong.status, 403);

    // Another account cannot take the address.
    const bob = await registerUser(server, "bob");
    const taken = await server.request("POST", `${V3}/account/3pid/email/requestToken`, {
      token: bob.accessToken,
      body: { client_secret: "bobsecret", email: "alice@example.org", send_attempt: 1 },
    });
    assertEquals(taken.status, 400);
    assertEquals(taken.body.errcode, "M_THREEPID_IN_USE");

    const deleted = await server.request("POST", `${V3}/account/3pid/delete`, {
      token,
      body: { medium: "email", address: "alice@example.org" },
    });
    assertEquals(deleted.status, 200);
    // Never bound at an identity server through us: nothing to unbind.
    assertEquals(deleted.body.id_server_unbind_result, "no-support");
    assertEquals((await server.request("GET", `${V3}/account/3pid`, { token })).body, {
      threepids: [],
    });
  } finally {
    await close();
  }
});

Deno.test("3pid: requestToken resends only on a higher send_attempt, and a token works once validated", async () => {
  const { server, mailbox, close } = await setup();
  try {
    const body = { client_secret: "resend", email: "r@example.org", send_attempt: 1 };
    const path = `${V3}/account/3pid/email/requestToken`;
    const first = await server.request("POST", path, { body });
    const again = await server.request("POST", path, { body });
    assertEquals(again.body.sid, first.body.sid);
    const mail = await mailbox.nextMailTo("r@example.org");
    assertEquals(mailbox.mails.length, 1);
    const third = await server.request("POST", path, { body: { ...body, send_attempt: 2 } });
    assertEquals(third.body.sid, first.body.sid);
    const second = await mailbox.nextMailTo("r@example.org");
    assertEquals(mailbox.mails.length, 2);
    // The first mail's token was replaced by the second's.
    assertEquals((await server.request("GET", linkIn(mail))).status, 400);
    assertEquals((await server.request("GET", linkIn(second))).status, 200);
    // POST submit (the submit_url form) with the same token: already validated, still fine.
    const url = new URL(`https://x${linkIn(second)}`);
    const posted = await server.request("POST", url.pathname, {
      body: {
        sid: url.searchParams.get("sid"),
        client_secret: url.searchParams.get("client_secret"),
        token: url.searchParams.get("token"),
      },
    });
    assertEquals(posted.body, { success: true });
    const badToken = await server.request("POST", url.pathname, {
      body: { sid: url.searchParams.get("sid"), client_secret: "resend", token: "guess" },
    });
    assertEquals(badToken.status, 400);
    assertEquals(badToken.body.errcode, "M_THREEPID_AUTH_FAILED");
  } finally {
    await close();
  }
});

Deno.test("3pid: requestToken refuses bad input, unknown addresses for resets, and phone numbers", async () => {
  const { server, close } = await setup();
  try {
    const badSecret = await server.request("POST", `${V3}/register/email/requestToken`, {
      body: { client_secret: "has space", email: "a@example.org", send_attempt: 1 },
    });
    assertEquals(badSecret.status, 400);
    const badEmail = await server.request("POST", `${V3}/register/email/requestToken`, {
      body: { client_secret: "s", email: "not-an-address", send_attempt: 1 },
    });
    assertEquals(badEmail.status, 400);
    const missing = await server.request("POST", `${V3}/register/email/requestToken`, {
      body: { client_secret: "s", send_attempt: 1 },
    });
    assertEquals(missing.status, 400);
    const reset = await server.request("POST", `${V3}/account/password/email/requestToken`, {
      body: { client_secret: "s", email: "unknown@example.org", send_attempt: 1 },
    });
    assertEquals(reset.body.errcode, "M_THREEPID_NOT_FOUND");
    for (const path of ["register", "account/3pid", "account/password"]) {
      const sms = await server.request("POST", `${V3}/${path}/msisdn/requestToken`, {
        body: { client_secret: "s", country: "GB", phone_number: "07700900001", send_attempt: 1 },
      });
      assertEquals(sms.status, 400);
      assertEquals(sms.body.errcode, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
    }
  } finally {
    await close();
  }
});

Deno.test("3pid: without SMTP, email validation is not offered", async () => {
  const server = await startTestServer();
  try {
    const res = await server.request("POST", `${V3}/register/email/requestToken`, {
      body: { client_secret: "s", email: "a@example.org", send_attempt: 1 },
    });
    assertEquals(res.status, 400);
    assertEquals(res.body.errcode, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
    const flows = await server.request("POST", `${V3}/register`, { body: {} });
    assertEquals(flows.body.flows, [{ stages: ["m.login.dummy"] }]);
  } finally {
    server.close();
  }
});

Deno.test("3pid: registration with m.login.email.identity adds the address; password reset by mail", async () => {
  const { server, mailbox, close } = await setup();
  try {
    const challenge = await server.request("POST", `${V3}/register`, {
      body: { username: "carol", password: "pw-carol" },
    });
    assertEquals(challenge.status, 401);
    assert(
      challenge.body.flows.some((f: { stages: string[] }) =>
        f.stages.length === 1 && f.stages[0] === "m.login.email.identity"
      ),
    );
    const creds = await validateEmail(
      server,
      mailbox,
      "/register/email/requestToken",
      "carol@example.org",
    );
    // A session that was never validated is no proof.
    const unvalidated = await server.request("POST", `${V3}/register`, {
      body: {
        username: "carol",
        password: "pw-carol",
        auth: {
          type: "m.login.email.identity",
          session: challenge.body.session,
          threepid_creds: { sid: "nope", client_secret: creds.clientSecret },
        },
      },
    });
    assertEquals(unvalidated.status, 401);
    const registered = await server.request("POST", `${V3}/register`, {
      body: {
        username: "carol",
        password: "pw-carol",
        auth: {
          type: "m.login.email.identity",
          session: challenge.body.session,
          threepid_creds: { sid: creds.sid, client_secret: creds.clientSecret },
        },
      },
    });
    assertEquals(registered.status, 200, JSON.stringify(registered.body));
    const listed = await server.request("GET", `${V3}/account/3pid`, {
      token: registered.body.access_token,
    });
    assertEquals(listed.body.threepids[0].address, "carol@example.org");

    // Forgotten password: a mail to the address, then a new password without a token.
    const reset = await validateEmail(
      server,
      mailbox,
      "/account/password/email/requestToken",
      "carol@example.org",
    );
    const first = await server.request("POST", `${V3}/account/password`, {
      body: { new_password: "new-pw" },
    });
    assertEquals(first.status, 401);
    assertEquals(first.body.flows, [{ stages: ["m.login.email.identity"] }]);
    const changed = await server.request("POST", `${V3}/account/password`, {
      body: {
        new_password: "new-pw",
        auth: {
          type: "m.login.email.identity",
          session: first.body.session,
          threepid_creds: { sid: reset.sid, client_secret: reset.clientSecret },
        },
      },
    });
    assertEquals(changed.status, 200, JSON.stringify(changed.body));
    // Every session was logged out, and the new password works.
    const old = await server.request("GET", `${V3}/account/whoami`, {
      token: registered.body.access_token,
    });
    assertEquals(old.status, 401);
    const login = await server.request("POST", `${V3}/login`, {
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: "carol" },
        password: "new-pw",
      },
    });
    assertEquals(login.status, 200);
  } finally {
    await close();
  }
});

Deno.test("3pid: bind, unbind and delete reach the identity server, and deactivation unbinds", async () => {
  const { server, idServer, close } = await setup();
  try {
    const dave = await registerUser(server, "dave", "pw-dave");
    const token = dave.accessToken;
    const bind = (address: string) =>
      server.request("POST", `${V3}/account/3pid/bind`, {
        token,
        body: {
          id_server: idServer.name,
          id_access_token: idServer.accessToken,
          sid: idServer.validate("email", address),
          client_secret: "c",
        },
      });
    assertEquals((await bind("d1@example.org")).status, 200);
    assertEquals(idServer.lookup("email", "d1@example.org"), dave.userId);
    // Unbind without naming the server: the one it was bound through.
    const unbound = await server.request("POST", "/_matrix/client/unstable/account/3pid/unbind", {
      token,
      body: { medium: "email", address: "d1@example.org" },
    });
    assertEquals(unbound.body, { id_server_unbind_result: "success" });
    assertEquals(idServer.lookup("email", "d1@example.org"), undefined);
    const unbind = idServer.requests.find((r) => r.path.endsWith("/3pid/unbind"))!;
    assert(unbind.authorization?.startsWith('X-Matrix origin="example.org:8448"'));

    // Bound out of band, deleted naming the server.
    idServer.bindDirectly("email", "d2@example.org", dave.userId);
    const deleted = await server.request("POST", `${V3}/account/3pid/delete`, {
      token,
      body: { medium: "email", address: "d2@example.org", id_server: idServer.name },
    });
    assertEquals(deleted.body, { id_server_unbind_result: "success" });
    assertEquals(idServer.lookup("email", "d2@example.org"), undefined);

    // A bad identity server name, and a session the identity server does not know.
    const bad = await server.request("POST", `${V3}/account/3pid/bind`, {
      token,
      body: { id_server: "https://x", id_access_token: "t", sid: "s", client_secret: "c" },
    });
    assertEquals(bad.status, 400);
    const unknown = await server.request("POST", `${V3}/account/3pid/bind`, {
      token,
      body: {
        id_server: idServer.name,
        id_access_token: idServer.accessToken,
        sid: "x",
        client_secret: "c",
      },
    });
    assertEquals(unknown.body.errcode, "M_NO_VALID_SESSION");

    assertEquals((await bind("d3@example.org")).status, 200);
    const first = await server.request("POST", `${V3}/account/deactivate`, { token, body: {} });
    const deactivated = await server.request("POST", `${V3}/account/deactivate`, {
      token,
      body: {
        auth: { type: "m.login.password", session: first.body.session, password: "pw-dave" },
      },
    });
    assertEquals(deactivated.body, { id_server_unbind_result: "success" });
    assertEquals(idServer.lookup("email", "d3@example.org"), undefined);
  } finally {
    await close();
  }
});

Deno.test("3pid: the identity server's address is checked unless private addresses are allowed", async () => {
  const mailbox = await startMailbox();
  const idServer: FakeIdentityServer = await startIdentityServer();
  const server = await startTestServer({ TESSERA_OUTBOUND_TLS_VERIFY: "off" });
  try {
    const erin = await registerUser(server, "erin");
    const res = await server.request("POST", `${V3}/account/3pid/bind`, {
      token: erin.accessToken,
      body: {
        id_server: idServer.name,
        id_access_token: idServer.accessToken,
        sid: idServer.validate("email", "e@example.org"),
        client_secret: "c",
      },
    });
    assertEquals(res.status, 403);
    assertEquals(idServer.requests.length, 0);
  } finally {
    server.close();
    await mailbox.close();
    await idServer.close();
  }
});

Deno.test("3pid: the deprecated POST /account/3pid adds a session this server validated, or binds at the identity server", async () => {
  const { server, mailbox, idServer, close } = await setup();
  try {
    const fay = await registerUser(server, "fay");
    const token = fay.accessToken;
    const local = await validateEmail(
      server,
      mailbox,
      "/account/3pid/email/requestToken",
      "fay@example.org",
    );
    const added = await server.request("POST", `${V3}/account/3pid`, {
      token,
      body: { three_pid_creds: { sid: local.sid, client_secret: local.clientSecret } },
    });
    assertEquals(added.status, 200, JSON.stringify(added.body));
    assertEquals(
      (await server.request("GET", `${V3}/account/3pid`, { token })).body.threepids[0].address,
      "fay@example.org",
    );
    const bound = await server.request("POST", `${V3}/account/3pid`, {
      token,
      body: {
        three_pid_creds: {
          sid: idServer.validate("email", "fay2@example.org"),
          client_secret: "c",
          id_server: idServer.name,
          id_access_token: idServer.accessToken,
        },
      },
    });
    assertEquals(bound.status, 200, JSON.stringify(bound.body));
    assertEquals(idServer.lookup("email", "fay2@example.org"), fay.userId);
    const neither = await server.request("POST", `${V3}/account/3pid`, {
      token,
      body: { three_pid_creds: { sid: "unknown", client_secret: "c" } },
    });
    assertEquals(neither.body.errcode, "M_THREEPID_AUTH_FAILED");
    const missing = await server.request("POST", `${V3}/account/3pid`, { token, body: {} });
    assertEquals(missing.body.errcode, "M_MISSING_PARAM");
  } finally {
    await close();
  }
});

Deno.test("3pid: a next_link sends the browser on after validation, with the session ID", async () => {
  const { server, mailbox, close } = await setup();
  try {
    const mail = mailbox.nextMailTo("g@example.org");
    const res = await server.request("POST", `${V3}/account/3pid/email/requestToken`, {
      body: {
        client_secret: "g",
        email: "g@example.org",
        send_attempt: 1,
        next_link: "https://app.example.org/done?x=1",
      },
    });
    const followed = await server.request("GET", linkIn(await mail));
    assertEquals(followed.status, 302);
    const location = new URL(followed.headers.get("location")!);
    assertEquals(location.origin + location.pathname, "https://app.example.org/done");
    assertEquals(location.searchParams.get("sid"), res.body.sid);
    const bad = await server.request("POST", `${V3}/account/3pid/email/requestToken`, {
      body: { client_secret: "g", email: "g@example.org", send_attempt: 2, next_link: "file:///x" },
    });
    assertEquals(bad.status, 400);
  } finally {
    await close();
  }
});

Deno.test("3pid: deleting an address works while its identity server is down (no-support)", async () => {
  const mailbox = await startMailbox();
  const idServer = await startIdentityServer();
  const server = await startTestServer({
    TESSERA_SMTP_URL: `smtp://127.0.0.1:${mailbox.port}`,
    TESSERA_OUTBOUND_ALLOW_PRIVATE: "on",
    TESSERA_OUTBOUND_TLS_VERIFY: "off",
  });
  try {
    const gus = await registerUser(server, "gus");
    const token = gus.accessToken;
    const { sid, clientSecret } = await validateEmail(
      server,
      mailbox,
      "/account/3pid/email/requestToken",
      "gus@example.org",
    );
    await server.request("POST", `${V3}/account/3pid`, {
      token,
      body: { three_pid_creds: { sid, client_secret: clientSecret } },
    });
    const bound = await server.request("POST", `${V3}/account/3pid/bind`, {
      token,
      body: {
        id_server: idServer.name,
        id_access_token: idServer.accessToken,
        sid: idServer.validate("email", "gus@example.org"),
        client_secret: "c",
      },
    });
    assertEquals(bound.status, 200);
    await idServer.close();
    const deleted = await server.request("POST", `${V3}/account/3pid/delete`, {
      token,
      body: { medium: "email", address: "gus@example.org" },
    });
    assertEquals(deleted.status, 200, JSON.stringify(deleted.body));
    assertEquals(deleted.body.id_server_unbind_result, "no-support");
    assertEquals((await server.request("GET", `${V3}/account/3pid`, { token })).body, {
      threepids: [],
    });
    // An unbind alone, though, reports that the identity server could not be reached.
    const unbind = await server.request("POST", `${V3}/account/3pid/unbind`, {
      token,
      body: { medium: "email", address: "gus@example.org" },
    });
    assertEquals(unbind.status, 502);
  } finally {
    server.close();
    await mailbox.close();
  }
});
