/**
 * The device link page (RFC 8628's verification URI) driven like a browser: sign-in first, the
 * code typed or prefilled, the client and scopes shown, Allow or Deny, and the polling device
 * getting its tokens or access_denied. Unknown codes, CSRF and rate limits of code guesses.
 */
import { assert, assertEquals } from "../../assert.ts";
import { OAUTH_ENDPOINTS, OAUTH_PAGES } from "../../../domain/oauth/oauth_paths.ts";
import { startTestServer } from "../test_server.ts";
import { formTo, passwordSignIn } from "./browser_flow.ts";
import { browserFor, createUser, registerClient, type TestServer } from "./oauth_client_fixture.ts";

const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

async function formPost(server: TestServer, path: string, fields: Record<string, string>) {
  const res = await server.app.request(path, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields).toString(),
  });
  return { status: res.status, body: await res.json() };
}

async function startDeviceGrant(server: TestServer) {
  const clientId = await registerClient(server, {
    client_name: "TV App",
    grant_types: [DEVICE_GRANT, "refresh_token"],
    response_types: [],
    redirect_uris: undefined,
  });
  const started = await formPost(server, OAUTH_ENDPOINTS.deviceAuthorization, {
    client_id: clientId,
    scope: "urn:matrix:client:api:* urn:matrix:client:device:TVDEVICE",
  });
  assertEquals(started.status, 200, JSON.stringify(started.body));
  return { clientId, ...started.body } as {
    clientId: string;
    device_code: string;
    user_code: string;
    verification_uri: string;
    verification_uri_complete: string;
  };
}

/** A clock the tests move on, so polls respect the grant's interval without sleeping. */
function testClock() {
  let now = Date.now();
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

function poll(
  server: TestServer,
  clientId: string,
  deviceCode: string,
  clock: ReturnType<typeof testClock>,
) {
  clock.advance(6_000);
  return formPost(server, OAUTH_ENDPOINTS.token, {
    grant_type: DEVICE_GRANT,
    device_code: deviceCode,
    client_id: clientId,
  });
}

Deno.test("link page: type the code, allow, and the device gets its tokens", async () => {
  const clock = testClock();
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, { now: clock.now });
  try {
    const lee = await createUser(server, "lee", "pw-lee-1");
    const grant = await startDeviceGrant(server);
    assertEquals(new URL(grant.verification_uri).pathname, OAUTH_PAGES.link);
    const browser = browserFor(server);

    // Not signed in: the link page sends the browser to sign in, then back.
    const first = await browser.get(OAUTH_PAGES.link);
    assertEquals(new URL(first.location!).pathname, OAUTH_PAGES.login);
    const back = await browser.follow(
      await passwordSignIn(browser, "lee", "pw-lee-1", OAUTH_PAGES.link),
    );
    assertEquals(new URL(back.url).pathname, OAUTH_PAGES.link);
    assert(!/<script/i.test(back.text));
    assert(back.text.includes('<label for="code">'));

    // A wrong code is refused and shows the form again.
    const wrong = await browser.submit(formTo(back, OAUTH_PAGES.link), { code: "BBBB-CCCC" });
    assertEquals(wrong.status, 400);
    assert(wrong.text.includes("not valid"));

    // Typed in lower case without the dash: the code is found.
    const typed = grant.user_code.replace("-", "").toLowerCase();
    const confirm = await browser.submit(formTo(wrong, OAUTH_PAGES.link), { code: typed });
    assertEquals(confirm.status, 200);
    assert(confirm.text.includes("TV App"));
    assert(confirm.text.includes("TVDEVICE"));
    assert(confirm.text.includes(grant.user_code));

    assertEquals(
      (await poll(server, grant.clientId, grant.device_code, clock)).body.error,
      "authorization_pending",
    );
    const done = await browser.submit(formTo(confirm, OAUTH_PAGES.link), {}, "allow");
    assertEquals(done.status, 200);
    assert(done.text.includes("Device allowed"));

    const tokens = await poll(server, grant.clientId, grant.device_code, clock);
    assertEquals(tokens.status, 200, JSON.stringify(tokens.body));
    const whoami = await server.request("GET", "/_matrix/client/v3/account/whoami", {
      token: tokens.body.access_token,
    });
    assertEquals([whoami.body.user_id, whoami.body.device_id], [lee.userId, "TVDEVICE"]);

    // The code is used up: allowing it again does nothing.
    const again = await browser.submit(formTo(confirm, OAUTH_PAGES.link), {}, "allow");
    assertEquals(again.status, 400);
  } finally {
    server.close();
  }
});

Deno.test("link page: the complete URI prefills, deny refuses the device, CSRF checked", async () => {
  const clock = testClock();
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" }, { now: clock.now });
  try {
    await createUser(server, "mia", "pw-mia-1");
    const grant = await startDeviceGrant(server);
    const browser = browserFor(server);
    await passwordSignIn(browser, "mia", "pw-mia-1");
    const complete = new URL(grant.verification_uri_complete);
    // Opening it shows the confirmation but decides nothing.
    const confirm = await browser.get(complete.pathname + complete.search);
    assertEquals(confirm.status, 200);
    assert(confirm.text.includes("TV App"));
    assertEquals(
      (await poll(server, grant.clientId, grant.device_code, clock)).body.error,
      "authorization_pending",
    );

    const form = formTo(confirm, OAUTH_PAGES.link);
    const forged = await browser.post(form.action, { code: grant.user_code, action: "allow" });
    assertEquals(forged.status, 403);
    const foreign = await browser.post(form.action, { ...form.fields, action: "allow" }, {
      origin: "https://evil.example",
    });
    assertEquals(foreign.status, 403);
    assertEquals(
      (await poll(server, grant.clientId, grant.device_code, clock)).body.error,
      "authorization_pending",
    );

    const denied = await browser.submit(form, {}, "deny");
    assertEquals(denied.status, 200);
    assert(denied.text.includes("refused"));
    assertEquals(
      (await poll(server, grant.clientId, grant.device_code, clock)).body.error,
      "access_denied",
    );
  } finally {
    server.close();
  }
});

Deno.test("link page: code guesses are rate limited per user", async () => {
  const server = await startTestServer();
  try {
    await createUser(server, "ned", "pw-ned-1");
    const browser = browserFor(server);
    await passwordSignIn(browser, "ned", "pw-ned-1");
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      statuses.push(
        (await browser.get(`${OAUTH_PAGES.link}?code=BCDF-GHJ${"KLMNPQRSTV"[i % 10]}`)).status,
      );
    }
    assertEquals(statuses.slice(0, 10), Array(10).fill(400));
    assertEquals(statuses.slice(10), [429, 429]);
  } finally {
    server.close();
  }
});
