/**
 * The account management pages (MSC4191 actions) over HTTP with a cookie jar: sign-in required,
 * the session list naming OAuth clients, signing one session or all of them out (their tokens
 * die), device view and delete confirmation, profile edits reaching room member events,
 * deactivation with the password or a recent sign-in, cross-signing reset approval feeding the
 * m.oauth UIA stage, and CSRF refusals that change nothing.
 */
import { assert, assertEquals } from "../../assert.ts";
import { startTestServer } from "../test_server.ts";
import { FAST_HASHING, type RegisteredUser, registerUser } from "../client_harness.ts";
import {
  type Browser,
  type BrowserResponse,
  csrfToken,
  forms,
  links,
  type ParsedForm,
  passwordSignIn,
} from "./browser_flow.ts";
import { browserFor } from "./oauth_client_fixture.ts";
import { newCrossSigning } from "../../domain/e2ee/cross_signing_fixtures.ts";
import { OAUTH_PAGES } from "../../../domain/oauth/oauth_paths.ts";
import { RECENT_SIGN_IN_MS, SESSION_COOKIE } from "../../../routes/oauth/browser_session.ts";
import { ACCOUNT_MANAGEMENT_ACTIONS } from "../../../domain/oauth/server_metadata.ts";

const V3 = "/_matrix/client/v3";
const ACCOUNT = OAUTH_PAGES.account;
type Server = Awaited<ReturnType<typeof startTestServer>>;

const clock = { now: Date.now() };

async function start(): Promise<Server> {
  return await startTestServer(
    { TESSERA_RATE_LIMITS: "off" },
    { ...FAST_HASHING, now: () => clock.now },
  );
}

/** A registered client and an OAuth session of `user` on it (as a grant starts one). */
async function oauthSession(server: Server, user: RegisteredUser, deviceId: string) {
  const client = await server.deps.oauthClients.register({
    client_name: "Element X",
    client_uri: "https://element.example",
    redirect_uris: ["https://element.example/callback"],
    application_type: "web",
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
  });
  const issued = await server.deps.accounts.oauthSessions.start({
    userId: user.userId,
    deviceId,
    clientId: client.clientId,
    sessionId: crypto.randomUUID(),
    scope: `urn:matrix:client:api:* urn:matrix:client:device:${deviceId}`,
  });
  return { userId: user.userId, deviceId, accessToken: issued.accessToken };
}

async function whoami(server: Server, token: string): Promise<number> {
  return (await server.request("GET", `${V3}/account/whoami`, { token })).status;
}

/** Sign the browser in with the login page and land on `next`. */
async function signIn(
  browser: Browser,
  user: string,
  password: string,
  next: string = ACCOUNT,
) {
  const posted = await passwordSignIn(browser, user, password, next);
  assertEquals(posted.status, 303, posted.text);
  return await browser.follow(posted);
}

/** The account page's form posting `action` (the navigation's sign-out form comes first). */
function actionForm(page: BrowserResponse, action: string): ParsedForm {
  const found = forms(page).find((f) =>
    new URL(f.action).pathname === ACCOUNT && f.fields.action === action
  );
  if (!found) throw new Error(`no ${action} form on ${page.url} (${page.status}): ${page.text}`);
  return found;
}

/** Pages are usable without JavaScript, and every input that is shown has a label. */
function assertAccessible(page: BrowserResponse) {
  assert(!/<script/i.test(page.text), "no script");
  for (const match of page.text.matchAll(/<input\b[^>]*>/gi)) {
    const tag = match[0];
    if (/type="hidden"/.test(tag)) continue;
    const id = tag.match(/\sid="([^"]+)"/)?.[1];
    const labelled = id !== undefined && page.text.includes(`for="${id}"`);
    const wrapped = new RegExp(`<label>[^<]*${escapeRegExp(tag)}`).test(page.text);
    assert(labelled || wrapped, `unlabelled input ${tag}`);
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

Deno.test("account pages: signed-out browsers go to the login page and come back", async () => {
  const server = await start();
  try {
    await registerUser(server, "alice", "correct horse");
    const browser = browserFor(server);
    const target = `${ACCOUNT}?action=org.matrix.devices_list`;
    const first = await browser.get(target);
    assertEquals(first.status, 303);
    const login = new URL(first.location!);
    assertEquals(login.pathname, OAUTH_PAGES.login);
    assertEquals(login.searchParams.get("next"), target);
    const landed = await signIn(browser, "alice", "correct horse", target);
    assertEquals(landed.status, 200);
    assertEquals(new URL(landed.url).searchParams.get("action"), "org.matrix.devices_list");
    assert(landed.text.includes("Sessions"));
    assertAccessible(landed);
    // A form posted by a browser signed out meanwhile does nothing and goes to sign in.
    const stranger = browserFor(server);
    const post = await stranger.post(ACCOUNT, { action: "sign_out_all", csrf: "x" });
    assertEquals(post.status, 303);
    assertEquals(new URL(post.location!).pathname, OAUTH_PAGES.login);
    // The navigation's sign-out form ends this browser's session.
    const signOut = forms(landed).find((f) => new URL(f.action).pathname === OAUTH_PAGES.logout);
    assert(signOut);
    assertEquals(signOut.method, "post");
    await browser.follow(await browser.submit(signOut));
    assert(!browser.cookies.has(SESSION_COOKIE));
    assertEquals((await browser.get(ACCOUNT)).status, 303);
  } finally {
    server.close();
  }
});

Deno.test("account pages: the session list names OAuth clients, and sign-out kills the tokens", async () => {
  const server = await start();
  try {
    const alice = await registerUser(server, "alice", "correct horse");
    const oauth = await oauthSession(server, alice, "OAUTHDEVICE");
    const browser = browserFor(server);
    const list = await signIn(
      browser,
      "alice",
      "correct horse",
      `${ACCOUNT}?action=org.matrix.devices_list`,
    );
    assertEquals(list.status, 200);
    assertAccessible(list);
    assert(list.text.includes("OAUTHDEVICE"));
    assert(list.text.includes(alice.deviceId));
    assert(list.text.includes("Element X"));
    assert(list.text.includes("element.example"));
    assert(list.text.includes("Signed in with a password"));
    // Each session links to its own page.
    const view = links(list).find((l) => l.includes("device_view") && l.includes("OAUTHDEVICE"));
    assert(view);
    const viewPage = await browser.get(view);
    assertEquals(viewPage.status, 200);
    assert(viewPage.text.includes("Element X"));

    assertEquals(await whoami(server, oauth.accessToken), 200);
    const signOut = forms(list).find((f) =>
      f.fields.action === "org.matrix.device_delete" && f.fields.device_id === "OAUTHDEVICE"
    );
    assert(signOut);
    const done = await browser.submit(signOut);
    assertEquals(done.status, 303);
    const after = await browser.follow(done);
    assert(after.text.includes("The session was signed out."));
    assert(!after.text.includes("OAUTHDEVICE"));
    assertEquals(await whoami(server, oauth.accessToken), 401);
    assertEquals(await whoami(server, alice.accessToken), 200);
    assertEquals(await server.deps.accounts.getDevice(alice.userId, "OAUTHDEVICE"), null);
  } finally {
    server.close();
  }
});

Deno.test("account pages: device_view and device_delete confirm before signing out", async () => {
  const server = await start();
  try {
    const alice = await registerUser(server, "alice", "correct horse");
    const oauth = await oauthSession(server, alice, "PHONE");
    const browser = browserFor(server);
    const confirm = await signIn(
      browser,
      "alice",
      "correct horse",
      `${ACCOUNT}?action=org.matrix.device_delete&device_id=PHONE`,
    );
    assertEquals(confirm.status, 200);
    assertAccessible(confirm);
    // Showing the confirmation changed nothing.
    assertEquals(await whoami(server, oauth.accessToken), 200);
    const form = actionForm(confirm, "org.matrix.device_delete");
    assertEquals([form.method, form.fields.device_id], ["post", "PHONE"]);
    assertEquals((await browser.submit(form)).status, 303);
    assertEquals(await whoami(server, oauth.accessToken), 401);

    // Unknown, gone and malformed device IDs: a 404 page, never a 500.
    for (
      const id of ["PHONE", "NOPE", "x".repeat(3000), "bad id", ""]
    ) {
      for (const action of ["org.matrix.device_view", "org.matrix.device_delete"]) {
        const page = await browser.get(
          `${ACCOUNT}?action=${action}&device_id=${encodeURIComponent(id)}`,
        );
        assertEquals(page.status, 404, `${action} ${id.slice(0, 10)}`);
      }
    }
    // MSC4191's earlier names of the session actions still work.
    const second = await oauthSession(server, alice, "LAPTOP");
    const legacyView = await browser.get(
      `${ACCOUNT}?action=org.matrix.session_view&device_id=LAPTOP`,
    );
    assertEquals(legacyView.status, 200);
    assert(legacyView.text.includes("LAPTOP"));
    const legacyEnd = await browser.get(
      `${ACCOUNT}?action=org.matrix.session_end&device_id=LAPTOP`,
    );
    assertEquals(actionForm(legacyEnd, "org.matrix.device_delete").fields.device_id, "LAPTOP");
    const legacyList = await browser.get(`${ACCOUNT}?action=org.matrix.sessions_list`);
    assert(forms(legacyList).some((f) => f.fields.action === "sign_out_all"));
    assertEquals(await whoami(server, second.accessToken), 200);
    const missing = await browser.get(`${ACCOUNT}?action=org.matrix.device_view`);
    assertEquals(missing.status, 404);
    // A post naming a device the user does not have deletes nothing.
    const token = csrfToken(confirm);
    const other = await registerUser(server, "bob", "battery staple");
    const foreign = await browser.post(ACCOUNT, {
      action: "org.matrix.device_delete",
      device_id: other.deviceId,
      csrf: token,
    });
    assertEquals(await server.deps.accounts.getDevice(alice.userId, other.deviceId), null);
    assertEquals(foreign.status, 404);
    assertEquals(await whoami(server, other.accessToken), 200);
  } finally {
    server.close();
  }
});

Deno.test("account pages: forms without the session's CSRF token or from another site do nothing", async () => {
  const server = await start();
  try {
    const alice = await registerUser(server, "alice", "correct horse");
    const browser = browserFor(server);
    const list = await signIn(
      browser,
      "alice",
      "correct horse",
      `${ACCOUNT}?action=org.matrix.devices_list`,
    );
    const token = csrfToken(list);
    const attempts: [Record<string, string>, Record<string, string>][] = [
      [{ action: "sign_out_all" }, {}],
      [{ action: "sign_out_all", csrf: "wrong" }, {}],
      [{ action: "sign_out_all", csrf: token }, { origin: "https://evil.example" }],
      [{ action: "org.matrix.device_delete", device_id: alice.deviceId }, {}],
      [{ action: "org.matrix.profile", displayname: "Mallory" }, {}],
      [{ action: "org.matrix.cross_signing_reset", csrf: "" }, {}],
      [{ action: "org.matrix.account_deactivate", password: "correct horse" }, {}],
    ];
    for (const [fields, headers] of attempts) {
      const res = await browser.post(ACCOUNT, fields, headers);
      assertEquals(res.status, 403, JSON.stringify(fields));
      assert(!/<script/i.test(res.text));
    }
    // Another browser's session token is not this one's.
    const other = browserFor(server);
    const otherPage = await signIn(other, "alice", "correct horse");
    const otherToken = csrfToken(otherPage);
    assert(otherToken !== token);
    const crossed = await browser.post(ACCOUNT, { action: "sign_out_all", csrf: otherToken });
    assertEquals(crossed.status, 403);
    // None of it happened.
    assertEquals(await whoami(server, alice.accessToken), 200);
    assertEquals(await server.deps.crossSigningResetApprovals.pending(alice.userId), null);
    const profile = await server.request("GET", `${V3}/profile/${alice.userId}/displayname`);
    assert(profile.body?.displayname !== "Mallory");
    // Not a form at all: refused before anything is read.
    const json = await browser.post(ACCOUNT, { action: "sign_out_all", csrf: token }, {
      "content-type": "application/json",
    });
    assertEquals(json.status, 415);
    assertEquals(await whoami(server, alice.accessToken), 200);
  } finally {
    server.close();
  }
});

Deno.test("account pages: sign out of every session", async () => {
  const server = await start();
  try {
    const alice = await registerUser(server, "alice", "correct horse");
    const oauth = await oauthSession(server, alice, "TABLET");
    const browser = browserFor(server);
    const list = await signIn(
      browser,
      "alice",
      "correct horse",
      `${ACCOUNT}?action=org.matrix.devices_list`,
    );
    const all = forms(list).find((f) => f.fields.action === "sign_out_all");
    assert(all);
    const after = await browser.follow(await browser.submit(all));
    assert(after.text.includes("Every session was signed out."));
    assertEquals(await whoami(server, oauth.accessToken), 401);
    assertEquals(await whoami(server, alice.accessToken), 401);
    assertEquals(await server.deps.accounts.listDevices(alice.userId), []);
    // The browser itself stays signed in to the account page.
    assertEquals((await browser.get(ACCOUNT)).status, 200);
  } finally {
    server.close();
  }
});

Deno.test("account pages: the profile's display name reaches the member events", async () => {
  const server = await start();
  try {
    const alice = await registerUser(server, "alice", "correct horse");
    const created = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: {},
    });
    assertEquals(created.status, 200);
    const roomId = created.body.room_id;
    const browser = browserFor(server);
    const profile = await signIn(browser, "alice", "correct horse");
    assertEquals(profile.status, 200);
    assertAccessible(profile);
    const form = actionForm(profile, "org.matrix.profile");
    const saved = await browser.follow(
      await browser.submit(form, { displayname: "  Alice <b>Liddell</b> " }),
    );
    assert(saved.text.includes("Your profile was saved."));
    // Escaped in the page, stored as typed (trimmed).
    assert(saved.text.includes("Alice &lt;b&gt;Liddell&lt;/b&gt;"));
    assert(!saved.text.includes("<b>Liddell"));
    const name = await server.request("GET", `${V3}/profile/${alice.userId}/displayname`);
    assertEquals(name.body.displayname, "Alice <b>Liddell</b>");
    const member = await server.request(
      "GET",
      `${V3}/rooms/${encodeURIComponent(roomId)}/state/m.room.member/${alice.userId}`,
      { token: alice.accessToken },
    );
    assertEquals(member.body.displayname, "Alice <b>Liddell</b>");

    const tooLong = await browser.submit(actionForm(saved, "org.matrix.profile"), {
      displayname: "x".repeat(300),
    });
    assertEquals(tooLong.status, 400);
    assert(tooLong.text.includes("at most 256 characters"));
    // Emptied: the display name goes.
    await browser.submit(actionForm(saved, "org.matrix.profile"), { displayname: "" });
    const cleared = await server.request("GET", `${V3}/profile/${alice.userId}`);
    assertEquals(cleared.body.displayname, undefined);
    // Notices are fixed texts: anything else in `done` shows nothing.
    for (const done of ["constructor", "__proto__", "toString", "<b>hi</b>"]) {
      const odd = await browser.get(`${ACCOUNT}?done=${encodeURIComponent(done)}`);
      assertEquals(odd.status, 200);
      assert(!odd.text.includes('role="status"'), done);
    }
    // An action this page does not know shows the main page.
    const unknown = await browser.get(`${ACCOUNT}?action=org.example.nope`);
    assertEquals(unknown.status, 200);
    assert(actionForm(unknown, "org.matrix.profile"));
  } finally {
    server.close();
  }
});

Deno.test("account pages: deactivation asks for the password", async () => {
  const server = await start();
  try {
    const alice = await registerUser(server, "alice", "correct horse");
    const browser = browserFor(server);
    const page = await signIn(
      browser,
      "alice",
      "correct horse",
      `${ACCOUNT}?action=org.matrix.account_deactivate`,
    );
    assertEquals(page.status, 200);
    assertAccessible(page);
    const form = actionForm(page, "org.matrix.account_deactivate");
    assert("password" in form.fields);

    const empty = await browser.submit(form, { password: "" });
    assertEquals(empty.status, 400);
    const wrong = await browser.submit(form, { password: "wrong" });
    assertEquals(wrong.status, 403);
    assert(wrong.text.includes("That password is not right."));
    assertEquals(await whoami(server, alice.accessToken), 200);

    const done = await browser.submit(form, { password: "correct horse" });
    assertEquals(done.status, 200);
    assert(done.text.includes("deactivated"));
    assert(!browser.cookies.has(SESSION_COOKIE));
    assertEquals(await whoami(server, alice.accessToken), 401);
    const login = await server.request("POST", `${V3}/login`, {
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: "alice" },
        password: "correct horse",
      },
    });
    assertEquals(login.status, 403);
    assertEquals((await browser.get(ACCOUNT)).status, 303);
  } finally {
    server.close();
  }
});

Deno.test("account pages: an account without a password deactivates after a recent sign-in", async () => {
  const server = await start();
  try {
    // Accounts an upstream provider made have no password; the browser signs in through it.
    const carol = await registerUser(server, "carol");
    const browser = browserFor(server);
    const { cookieValue } = await server.deps.browserSessions.start(carol.userId);
    browser.cookies.set(SESSION_COOKIE, cookieValue);
    const path = `${ACCOUNT}?action=org.matrix.account_deactivate`;

    clock.now += RECENT_SIGN_IN_MS + 1;
    const stale = await browser.get(path);
    assertEquals(stale.status, 200);
    const again = actionForm(stale, "reauthenticate");
    // Posting the deactivation anyway is refused.
    const refused = await browser.post(ACCOUNT, {
      action: "org.matrix.account_deactivate",
      csrf: again.fields.csrf,
    });
    assertEquals(refused.status, 403);
    assertEquals(await whoami(server, carol.accessToken), 200);
    // "Sign in again" ends this browser session and goes to the login page, back here after.
    const reauth = await browser.submit(again);
    assertEquals(reauth.status, 303);
    const login = new URL(reauth.location!);
    assertEquals(login.pathname, OAUTH_PAGES.login);
    assertEquals(login.searchParams.get("next"), path);
    assert(!browser.cookies.has(SESSION_COOKIE));

    // Signed in again (as the upstream callback would): the confirmation has no password field.
    const fresh = await server.deps.browserSessions.start(carol.userId);
    browser.cookies.set(SESSION_COOKIE, fresh.cookieValue);
    const confirm = await browser.get(path);
    const form = actionForm(confirm, "org.matrix.account_deactivate");
    assert(!("password" in form.fields));
    const done = await browser.submit(form, { erase: "true" });
    assertEquals(done.status, 200);
    assertEquals(await whoami(server, carol.accessToken), 401);
  } finally {
    server.close();
  }
});

Deno.test("account pages: a cross-signing reset approved here lets the OAuth session replace its keys once", async () => {
  const server = await start();
  try {
    const alice = await registerUser(server, "alice", "correct horse");
    const oauth = await oauthSession(server, alice, "OAUTHDEV");
    const upload = (cross: Awaited<ReturnType<typeof newCrossSigning>>, auth?: unknown) =>
      server.request("POST", `${V3}/keys/device_signing/upload`, {
        token: oauth.accessToken,
        body: {
          master_key: cross.upload.master,
          self_signing_key: cross.upload.self_signing,
          user_signing_key: cross.upload.user_signing,
          ...(auth === undefined ? {} : { auth }),
        },
      });
    assertEquals((await upload(await newCrossSigning(alice.userId))).status, 200);
    const second = await newCrossSigning(alice.userId);
    const challenge = await upload(second);
    assertEquals(challenge.status, 401);
    const url = new URL(challenge.body.params["m.oauth"].url);

    // The user opens the URL the client was given.
    const browser = browserFor(server);
    const page = await signIn(browser, "alice", "correct horse", url.pathname + url.search);
    assertEquals(page.status, 200);
    assertAccessible(page);
    const approve = actionForm(page, "org.matrix.cross_signing_reset");
    const approved = await browser.follow(await browser.submit(approve));
    assert(approved.text.includes("You approved a reset"));
    assert(await server.deps.crossSigningResetApprovals.pending(alice.userId));

    const retry = await upload(second, { type: "m.oauth", session: challenge.body.session });
    assertEquals(retry.status, 200);
    // Used up: the page offers to approve again.
    const later = await browser.get(`${url.pathname}${url.search}`);
    const approveAgain = actionForm(later, "org.matrix.cross_signing_reset");

    // An approval can be withdrawn before a client uses it.
    const again = await browser.follow(await browser.submit(approveAgain));
    const withdraw = actionForm(again, "cross_signing_reset_cancel");
    const withdrawn = await browser.follow(await browser.submit(withdraw));
    assert(withdrawn.text.includes("The approval was withdrawn."));
    assertEquals(await server.deps.crossSigningResetApprovals.pending(alice.userId), null);
    const third = await newCrossSigning(alice.userId);
    const refused = await upload(third);
    const noApproval = await upload(third, { type: "m.oauth", session: refused.body.session });
    assertEquals(noApproval.status, 401);
  } finally {
    server.close();
  }
});

Deno.test("account pages: a locked account may only sign out, a suspended one keeps its profile", async () => {
  const server = await startTestServer(
    { TESSERA_RATE_LIMITS: "off", TESSERA_ADMINS: "@root:example.org:8448" },
    FAST_HASHING,
  );
  try {
    const root = "@root:example.org:8448";
    const alice = await registerUser(server, "alice", "correct horse");
    await oauthSession(server, alice, "OAUTHDEV");
    const browser = browserFor(server);
    const page = await signIn(browser, "alice", "correct horse");
    const token = csrfToken(page);

    await server.deps.moderation.setSuspended(root, alice.userId, true);
    const suspended = await browser.post(ACCOUNT, {
      action: "org.matrix.profile",
      displayname: "Spam",
      csrf: token,
    });
    assertEquals(suspended.status, 403);
    const approval = await browser.post(ACCOUNT, {
      action: "org.matrix.cross_signing_reset",
      csrf: token,
    });
    assertEquals(approval.status, 303);

    await server.deps.moderation.setSuspended(root, alice.userId, false);
    await server.deps.moderation.setLocked(root, alice.userId, true);
    for (const action of ["org.matrix.profile", "org.matrix.cross_signing_reset"]) {
      const locked = await browser.post(ACCOUNT, { action, displayname: "x", csrf: token });
      assertEquals(locked.status, 403, action);
    }
    const deactivate = await browser.post(ACCOUNT, {
      action: "org.matrix.account_deactivate",
      password: "correct horse",
      csrf: token,
    });
    assertEquals(deactivate.status, 403);
    const signOut = await browser.post(ACCOUNT, {
      action: "org.matrix.device_delete",
      device_id: "OAUTHDEV",
      csrf: token,
    });
    assertEquals(signOut.status, 303);
    assertEquals(await server.deps.accounts.getDevice(alice.userId, "OAUTHDEV"), null);
    const profile = await server.request("GET", `${V3}/profile/${alice.userId}`);
    assert(profile.body.displayname !== "Spam");
  } finally {
    server.close();
  }
});

Deno.test("account pages: every action the metadata advertises opens its own page", async () => {
  const server = await start();
  try {
    const alice = await registerUser(server, "alice", "correct horse");
    const metadata = await server.request("GET", "/_matrix/client/v1/auth_metadata");
    assertEquals(metadata.body.account_management_actions_supported, [
      ...ACCOUNT_MANAGEMENT_ACTIONS,
    ]);
    const uri = new URL(metadata.body.account_management_uri);
    assertEquals(uri.pathname, ACCOUNT);
    const browser = browserFor(server);
    await signIn(browser, "alice", "correct horse");
    // The form each action's page offers (the list's per-session forms are device deletes).
    const expected: Record<string, string> = {
      "org.matrix.profile": "org.matrix.profile",
      "org.matrix.devices_list": "sign_out_all",
      "org.matrix.device_delete": "org.matrix.device_delete",
      "org.matrix.account_deactivate": "org.matrix.account_deactivate",
      "org.matrix.cross_signing_reset": "org.matrix.cross_signing_reset",
    };
    for (const action of ACCOUNT_MANAGEMENT_ACTIONS) {
      const query = new URLSearchParams({ action, device_id: alice.deviceId });
      const page = await browser.get(`${uri.pathname}?${query}`);
      assertEquals(page.status, 200, action);
      assertAccessible(page);
      if (action === "org.matrix.device_view") {
        assert(links(page).some((l) => l.includes("org.matrix.device_delete")), action);
      } else {
        assert(actionForm(page, expected[action]), action);
      }
    }
  } finally {
    server.close();
  }
});
