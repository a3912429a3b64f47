/**
 * The authorization endpoint and the sign-in and consent pages, driven like a browser: real form
 * posts with a cookie jar, redirects followed by hand. Covers the happy path to a working access
 * token, errors before and after the redirect URI is trusted, both response modes, loopback
 * ports, the prompt values, denial, CSRF refusals, single use of a request, and `next=` open
 * redirect attempts.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { assert, assertEquals } from "../../assert.ts";
import { OAUTH_ENDPOINTS, OAUTH_PAGES } from "../../../domain/oauth/oauth_paths.ts";
import { startTestServer } from "../test_server.ts";
import { type BrowserResponse, formTo, passwordSignIn, redirectParams } from "./browser_flow.ts";
import {
  authorizePath,
  browserFor,
  createUser,
  exchangeCode,
  LOOPBACK_REDIRECT,
  pkcePair,
  registerClient,
  registerNativeClient,
  type TestServer,
  WEB_REDIRECT,
} from "./oauth_client_fixture.ts";

const ISSUER = "http://example.org:8448/";

async function withServer(
  env: Record<string, string>,
  run: (server: TestServer) => Promise<void>,
): Promise<void> {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off", ...env });
  try {
    await run(server);
  } finally {
    server.close();
  }
}

/** Every visible input has a label, and no page carries a script. */
function assertAccessible(page: BrowserResponse): void {
  assert(!/<script/i.test(page.text), `script on ${page.url}`);
  assert(/<html lang="en">/.test(page.text), "lang");
  assert(page.text.includes('href="#main"'), "skip link");
  for (const input of page.text.matchAll(/<input\b[^>]*>/g)) {
    if (/type="hidden"/.test(input[0])) continue;
    const id = input[0].match(/\sid="([^"]+)"/)?.[1];
    assert(id !== undefined, `input without id: ${input[0]}`);
    assert(page.text.includes(`<label for="${id}">`), `no label for ${id}`);
  }
  assertEquals(page.headers.get("x-frame-options"), "DENY");
  assertEquals(page.headers.get("cache-control"), "no-store");
  assertEquals(page.headers.get("referrer-policy"), "same-origin");
  const csp = page.headers.get("content-security-policy") ?? "";
  assert(csp.includes("frame-ancestors 'none'"));
  // The inline stylesheet is the one the policy's hash allows (else browsers drop it).
  const style = page.text.match(/<style>([\s\S]*?)<\/style>/)![1];
  const digest = sha256(new TextEncoder().encode(style));
  assert(csp.includes(`style-src 'sha256-${btoa(String.fromCharCode(...digest))}'`), csp);
}

Deno.test("authorize: sign in, consent, code in the query, token works for /whoami", async () => {
  await withServer({}, async (server) => {
    const alice = await createUser(server, "alice", "correct horse");
    const clientId = await registerClient(server);
    const { verifier, challenge } = pkcePair();
    const browser = browserFor(server);

    const start = await browser.get(authorizePath(clientId, challenge));
    assertEquals(start.status, 303);
    const login = await browser.follow(start);
    assertEquals(new URL(login.url).pathname, OAUTH_PAGES.login);
    assertAccessible(login);

    const signedIn = await browser.submit(formTo(login, OAUTH_PAGES.login), {
      username: "alice",
      password: "correct horse",
    });
    assertEquals(signedIn.status, 303);
    const consent = await browser.follow(signedIn);
    assert(new URL(consent.url).pathname.startsWith(OAUTH_PAGES.consent), consent.url);
    assertAccessible(consent);
    assert(consent.text.includes("Example App"));
    assert(consent.text.includes("PAGEDEVICE"));
    assert(consent.text.includes(alice.userId));

    const allowed = await browser.submit(formTo(consent, OAUTH_PAGES.consent), {}, "allow");
    assertEquals(allowed.status, 303);
    assert(allowed.location!.startsWith(`${WEB_REDIRECT}?`), allowed.location);
    const params = redirectParams(allowed.location!);
    assertEquals(params.get("state"), "state-123");
    assertEquals(params.get("iss"), ISSUER);
    const code = params.get("code")!;
    assert(code.length >= 43);

    const tokens = await exchangeCode(server, { code, clientId, verifier });
    assertEquals(tokens.status, 200, JSON.stringify(tokens.body));
    const whoami = await server.request("GET", "/_matrix/client/v3/account/whoami", {
      token: tokens.body.access_token,
    });
    assertEquals([whoami.status, whoami.body.user_id, whoami.body.device_id], [
      200,
      alice.userId,
      "PAGEDEVICE",
    ]);
  });
});

Deno.test("authorize: fragment mode to a loopback URI with any port", async () => {
  await withServer({}, async (server) => {
    await createUser(server, "bob", "pw-bob-123");
    const clientId = await registerNativeClient(server);
    const { verifier, challenge } = pkcePair();
    const browser = browserFor(server);
    await passwordSignIn(browser, "bob", "pw-bob-123");
    const redirectUri = "http://127.0.0.1:51234/callback";
    const consent = await browser.open(authorizePath(clientId, challenge, {
      redirect_uri: redirectUri,
      response_mode: "fragment",
    }));
    const allowed = await browser.submit(formTo(consent, OAUTH_PAGES.consent), {}, "allow");
    assert(allowed.location!.startsWith(`${redirectUri}#`), allowed.location);
    const params = redirectParams(allowed.location!);
    assertEquals(params.get("state"), "state-123");
    const tokens = await exchangeCode(server, {
      code: params.get("code")!,
      clientId,
      verifier,
      redirectUri,
    });
    assertEquals(tokens.status, 200);
    // The port-less registered URI is not the one the code is bound to.
    const other = await browser.open(authorizePath(clientId, challenge, {
      redirect_uri: LOOPBACK_REDIRECT.replace("/callback", "/elsewhere"),
    }));
    assertEquals([other.status, other.location], [400, undefined]);
  });
});

Deno.test("authorize: bad client or redirect URI is an error page, never a redirect", async () => {
  await withServer({}, async (server) => {
    const clientId = await registerClient(server);
    const { challenge } = pkcePair();
    const browser = browserFor(server);
    const cases: Record<string, string | undefined>[] = [
      { client_id: undefined },
      { client_id: "no-such-client" },
      { redirect_uri: undefined },
      { redirect_uri: "https://evil.example/callback" },
      { redirect_uri: "https://app.example/callback/other" },
      { redirect_uri: "https://app.example/callback#frag" },
      { redirect_uri: "javascript:alert(1)" },
      // Even with every other parameter wrong too.
      {
        redirect_uri: "https://evil.example/cb",
        response_type: "token",
        code_challenge: undefined,
      },
    ];
    for (const params of cases) {
      const res = await browser.get(authorizePath(clientId, challenge, params));
      assertEquals([res.status, res.location], [400, undefined], JSON.stringify(params));
      assert(res.headers.get("content-type")?.startsWith("text/html"));
      assert(!res.text.includes("evil.example"), "the page does not echo the attacker's URI");
    }
    // A repeated redirect_uri is refused before anything is trusted.
    const doubled = await browser.get(
      `${authorizePath(clientId, challenge)}&redirect_uri=${encodeURIComponent(WEB_REDIRECT)}`,
    );
    assertEquals([doubled.status, doubled.location], [400, undefined]);
  });
});

Deno.test("authorize: other errors go back to the client with state and iss", async () => {
  await withServer({}, async (server) => {
    const clientId = await registerClient(server);
    const { challenge } = pkcePair();
    const browser = browserFor(server);
    const cases: [Record<string, string | undefined>, string][] = [
      [{ code_challenge: undefined }, "invalid_request"],
      [{ code_challenge_method: "plain" }, "invalid_request"],
      [{ code_challenge_method: undefined }, "invalid_request"],
      [{ code_challenge: "short" }, "invalid_request"],
      [{ response_type: "token" }, "unsupported_response_type"],
      [{ response_type: undefined }, "invalid_request"],
      [{ scope: "openid" }, "invalid_scope"],
      [{ scope: "urn:matrix:client:api:* admin" }, "invalid_scope"],
      [{ response_mode: "form_post" }, "invalid_request"],
      [{ prompt: "none login" }, "invalid_request"],
      [{ prompt: "select_account" }, "invalid_request"],
      [{ state: "x".repeat(3000) }, "invalid_request"],
    ];
    for (const [params, error] of cases) {
      const res = await browser.get(authorizePath(clientId, challenge, params));
      assertEquals(res.status, 303, JSON.stringify(params));
      assert(res.location!.startsWith(`${WEB_REDIRECT}?`), res.location);
      const got = redirectParams(res.location!);
      assertEquals(got.get("error"), error, JSON.stringify(params));
      assert((got.get("error_description") ?? "").length > 0);
      assertEquals(got.get("iss"), ISSUER);
      if (params.state === undefined) assertEquals(got.get("state"), "state-123");
    }
    // In fragment mode the error is in the fragment.
    const fragment = await browser.get(
      authorizePath(clientId, challenge, { response_mode: "fragment", code_challenge: undefined }),
    );
    assert(fragment.location!.startsWith(`${WEB_REDIRECT}#`), fragment.location);
    assertEquals(redirectParams(fragment.location!).get("error"), "invalid_request");
    // A repeated parameter (after the redirect URI) is an error too.
    const twice = await browser.get(`${authorizePath(clientId, challenge)}&scope=openid`);
    assertEquals(redirectParams(twice.location!).get("error"), "invalid_request");
    // A device-grant-only client registers no redirect URI, so it gets the error page.
    const deviceOnly = await registerClient(server, {
      grant_types: ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
      response_types: [],
      redirect_uris: undefined,
    });
    const refused = await browser.get(authorizePath(deviceOnly, challenge));
    assertEquals([refused.status, refused.location], [400, undefined]);
  });
});

Deno.test("authorize: prompt none, login and create", async () => {
  await withServer({}, async (server) => {
    await createUser(server, "carol", "pw-carol-1");
    const clientId = await registerClient(server);
    const { verifier, challenge } = pkcePair();
    const browser = browserFor(server);

    const silent = await browser.get(authorizePath(clientId, challenge, { prompt: "none" }));
    assertEquals(redirectParams(silent.location!).get("error"), "login_required");
    await passwordSignIn(browser, "carol", "pw-carol-1");
    const silentSignedIn = await browser.get(
      authorizePath(clientId, challenge, { prompt: "none" }),
    );
    assertEquals(redirectParams(silentSignedIn.location!).get("error"), "consent_required");

    // prompt=login: signed in, yet sent to sign in again before the consent page opens.
    const again = await browser.get(authorizePath(clientId, challenge, { prompt: "login" }));
    assertEquals(new URL(again.location!).pathname, OAUTH_PAGES.login);
    const consentUrl = new URL(again.location!).searchParams.get("next")!;
    const stillLogin = await browser.get(consentUrl);
    assertEquals(new URL(stillLogin.location!).pathname, OAUTH_PAGES.login);
    const reauth = await browser.follow(
      await passwordSignIn(browser, "carol", "pw-carol-1", consentUrl),
    );
    assert(new URL(reauth.url).pathname.startsWith(OAUTH_PAGES.consent));

    // prompt=create: the registration page, then consent as the new user.
    const fresh = browserFor(server);
    const create = await fresh.follow(
      await fresh.get(authorizePath(clientId, challenge, { prompt: "create" })),
    );
    assertEquals(new URL(create.url).pathname, OAUTH_PAGES.register);
    assertAccessible(create);
    const registered = await fresh.submit(formTo(create, OAUTH_PAGES.register), {
      username: "dave",
      password: "pw-dave-1",
      password_again: "pw-dave-1",
    });
    assertEquals(registered.status, 303);
    const consent = await fresh.follow(registered);
    assert(consent.text.includes("@dave:example.org:8448"));
    const allowed = await fresh.submit(formTo(consent, OAUTH_PAGES.consent), {}, "allow");
    const tokens = await exchangeCode(server, {
      code: redirectParams(allowed.location!).get("code")!,
      clientId,
      verifier,
    });
    assertEquals(tokens.status, 200);
    // The new account signs in with its password over /login too.
    const login = await server.request("POST", "/_matrix/client/v3/login", {
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: "dave" },
        password: "pw-dave-1",
      },
    });
    assertEquals(login.status, 200);
  });
});

Deno.test("consent: deny sends access_denied; a request answers once", async () => {
  await withServer({}, async (server) => {
    await createUser(server, "erin", "pw-erin-1");
    const clientId = await registerClient(server);
    const { challenge } = pkcePair();
    const browser = browserFor(server);
    await passwordSignIn(browser, "erin", "pw-erin-1");

    const consent = await browser.open(authorizePath(clientId, challenge));
    const form = formTo(consent, OAUTH_PAGES.consent);
    const denied = await browser.submit(form, {}, "deny");
    const params = redirectParams(denied.location!);
    assertEquals([params.get("error"), params.get("state"), params.get("code")], [
      "access_denied",
      "state-123",
      null,
    ]);
    // The same form again (a second tab, a double submit): no code.
    const replay = await browser.submit(form, {}, "allow");
    assertEquals([replay.status, replay.location], [404, undefined]);
  });
});

Deno.test("CSRF: consent and login refuse forged posts and write nothing", async () => {
  await withServer({}, async (server) => {
    await createUser(server, "frank", "pw-frank-1");
    const clientId = await registerClient(server);
    const { challenge } = pkcePair();
    const browser = browserFor(server);
    await passwordSignIn(browser, "frank", "pw-frank-1");
    const consent = await browser.open(authorizePath(clientId, challenge));
    const form = formTo(consent, OAUTH_PAGES.consent);

    const missing = await browser.post(form.action, { action: "allow" });
    assertEquals([missing.status, missing.location], [403, undefined]);
    const wrong = await browser.post(form.action, { action: "allow", csrf: "x".repeat(32) });
    assertEquals([wrong.status, wrong.location], [403, undefined]);
    const foreign = await browser.post(form.action, { ...form.fields, action: "allow" }, {
      origin: "https://evil.example",
    });
    assertEquals([foreign.status, foreign.location], [403, undefined]);
    assert(!/<script/i.test(foreign.text));
    // A cross-site form post as a browser sends it (no Origin, Sec-Fetch-Site cross-site).
    const crossSite = browserFor(server, null);
    for (const [k, v] of browser.cookies) crossSite.cookies.set(k, v);
    const fetchSite = await crossSite.post(form.action, { ...form.fields, action: "allow" }, {
      "sec-fetch-site": "cross-site",
    });
    assertEquals(fetchSite.status, 403);

    // Nothing was used up: the real form still works.
    const allowed = await browser.submit(form, {}, "allow");
    assert(redirectParams(allowed.location!).get("code"));

    // Login: a forged sign-in (login CSRF) is refused.
    const victim = browserFor(server);
    const login = await victim.get(OAUTH_PAGES.login);
    const loginForm = formTo(login, OAUTH_PAGES.login);
    const forged = await victim.post(loginForm.action, {
      username: "frank",
      password: "pw-frank-1",
      csrf: "y".repeat(32),
    });
    assertEquals(forged.status, 403);
    assert(!victim.cookies.has("tessera_session"));

    // A browser that sends `Origin: null` with `Sec-Fetch-Site: same-origin` (our own page's
    // post under a strict referrer policy) passes with the right token.
    const own = await victim.post(loginForm.action, {
      ...loginForm.fields,
      username: "frank",
      password: "pw-frank-1",
    }, { origin: "null", "sec-fetch-site": "same-origin" });
    assertEquals(own.status, 303);
    assert(victim.cookies.has("tessera_session"));
  });
});

Deno.test("login: next= only ever leads to a local path", async () => {
  await withServer({}, async (server) => {
    await createUser(server, "gina", "pw-gina-1");
    const attempts = [
      "//evil.example/",
      "https://evil.example/",
      "/\\evil.example",
      "\\\\evil.example",
      "javascript:alert(1)",
      "/\t/evil.example",
      "http:evil.example",
      "",
    ];
    for (const next of attempts) {
      const browser = browserFor(server);
      const res = await passwordSignIn(browser, "gina", "pw-gina-1", next);
      assertEquals(res.status, 303, next);
      const location = new URL(res.location!);
      assertEquals(location.origin, "http://localhost", next);
      assertEquals(location.pathname, OAUTH_PAGES.account, next);
    }
    const local = await passwordSignIn(
      browserFor(server),
      "gina",
      "pw-gina-1",
      "/account/link?code=AB",
    );
    assertEquals(
      new URL(local.location!).pathname + new URL(local.location!).search,
      "/account/link?code=AB",
    );
  });
});

Deno.test("login: wrong password, deactivated account, password login off", async () => {
  await withServer({}, async (server) => {
    const hank = await createUser(server, "hank", "pw-hank-1");
    const browser = browserFor(server);
    const wrong = await passwordSignIn(browser, "hank", "nope");
    assertEquals(wrong.status, 403);
    assert(wrong.text.includes("Wrong username or password"));
    assert(!browser.cookies.has("tessera_session"));

    // A signed-in browser loses its session when the account is deactivated.
    await passwordSignIn(browser, "hank", "pw-hank-1");
    const clientId = await registerClient(server);
    const { challenge } = pkcePair();
    const consent = await browser.open(authorizePath(clientId, challenge));
    assert(new URL(consent.url).pathname.startsWith(OAUTH_PAGES.consent));
    const deactivate = await server.request("POST", "/_matrix/client/v3/account/deactivate", {
      token: hank.accessToken,
      body: {
        auth: {
          type: "m.login.password",
          identifier: { type: "m.id.user", user: "hank" },
          password: "pw-hank-1",
        },
      },
    });
    assertEquals(deactivate.status, 200);
    const after = await browser.get(consent.url);
    assertEquals(new URL(after.location!).pathname, OAUTH_PAGES.login);
  });
  await withServer({ TESSERA_PASSWORD_LOGIN: "off" }, async (server) => {
    await createUser(server, "ivy", "pw-ivy-1");
    const browser = browserFor(server);
    const page = await browser.get(OAUTH_PAGES.login);
    assertEquals(page.status, 200);
    assert(!page.text.includes('name="password"'));
    const post = await browser.post(OAUTH_PAGES.login, { username: "ivy", password: "pw-ivy-1" });
    assertEquals(post.status, 403);
  });
});

Deno.test("register: closed, token mode, mismatched passwords, taken names", async () => {
  await withServer({ TESSERA_REGISTRATION: "closed" }, async (server) => {
    const browser = browserFor(server);
    assertEquals((await browser.get(OAUTH_PAGES.register)).status, 403);
    assertEquals(
      (await browser.post(OAUTH_PAGES.register, {
        username: "x",
        password: "y",
        password_again: "y",
      }))
        .status,
      403,
    );
    const login = await browser.get(OAUTH_PAGES.login);
    assert(!login.text.includes(OAUTH_PAGES.register), "no registration link when closed");
    // prompt=create falls back to sign-in when registration is closed.
    const clientId = await registerClient(server);
    const start = await browser.get(
      authorizePath(clientId, pkcePair().challenge, { prompt: "create" }),
    );
    assertEquals(new URL(start.location!).pathname, OAUTH_PAGES.login);
  });
  await withServer(
    { TESSERA_REGISTRATION: "token", TESSERA_REGISTRATION_TOKEN: "letmein" },
    async (server) => {
      const browser = browserFor(server);
      const page = await browser.get(OAUTH_PAGES.register);
      assertAccessible(page);
      const form = formTo(page, OAUTH_PAGES.register);
      assert("token" in form.fields);
      const fields = { username: "jay", password: "pw-jay-1", password_again: "pw-jay-1" };
      const noToken = await browser.submit(form, { ...fields, token: "guess" });
      assertEquals(noToken.status, 403);
      const mismatch = await browser.submit(form, {
        ...fields,
        token: "letmein",
        password_again: "x",
      });
      assertEquals(mismatch.status, 400);
      const ok = await browser.submit(form, { ...fields, token: "letmein" });
      assertEquals(ok.status, 303);
      const taken = await browserFor(server).submit(form, { ...fields, token: "letmein" });
      // Another browser has no CSRF cookie for this form: refused before anything else.
      assertEquals(taken.status, 403);
      const second = await browser.submit(
        formTo(await browser.get(OAUTH_PAGES.register), OAUTH_PAGES.register),
        { ...fields, token: "letmein" },
      );
      assertEquals(second.status, 400);
      assert(second.text.includes("already taken"));
    },
  );
});

Deno.test("logout: the browser session ends", async () => {
  await withServer({}, async (server) => {
    await createUser(server, "kim", "pw-kim-1");
    const browser = browserFor(server);
    await passwordSignIn(browser, "kim", "pw-kim-1");
    const page = await browser.get(OAUTH_PAGES.logout);
    assertAccessible(page);
    const cookie = browser.cookies.get("tessera_session")!;
    const out = await browser.submit(formTo(page, OAUTH_PAGES.logout));
    assertEquals(out.status, 303);
    assert(!browser.cookies.has("tessera_session"));
    // The old cookie is dead server-side too (a copy of it opens nothing).
    const thief = browserFor(server);
    thief.cookies.set("tessera_session", cookie);
    const clientId = await registerClient(server);
    const start = await thief.get(authorizePath(clientId, pkcePair().challenge));
    assertEquals(new URL(start.location!).pathname, OAUTH_PAGES.login);
  });
});

Deno.test("password change: browsers signed in to the pages are signed out", async () => {
  await withServer({}, async (server) => {
    const lou = await createUser(server, "lou", "pw-lou-1");
    const clientId = await registerClient(server);
    const { challenge } = pkcePair();
    const kept = browserFor(server);
    await passwordSignIn(kept, "lou", "pw-lou-1");
    const change = (password: string, old: string, logout: boolean) =>
      server.request("POST", "/_matrix/client/v3/account/password", {
        token: lou.accessToken,
        body: {
          new_password: password,
          logout_devices: logout,
          auth: {
            type: "m.login.password",
            identifier: { type: "m.id.user", user: "lou" },
            password: old,
          },
        },
      });
    // logout_devices false: the user keeps their sessions, browsers included.
    assertEquals((await change("pw-lou-2", "pw-lou-1", false)).status, 200);
    const still = await kept.get(authorizePath(clientId, challenge));
    assert(new URL(still.location!).pathname.startsWith(OAUTH_PAGES.consent));
    // The default (logging devices out) signs the browser out too.
    assertEquals((await change("pw-lou-3", "pw-lou-2", true)).status, 200);
    const after = await kept.get(authorizePath(clientId, challenge));
    assertEquals(new URL(after.location!).pathname, OAUTH_PAGES.login);
  });
});

Deno.test("authorize: the endpoint is absent when OAuth is off", async () => {
  await withServer({ TESSERA_OAUTH: "off" }, async (server) => {
    const res = await server.app.request(`${OAUTH_ENDPOINTS.authorization}?client_id=x`);
    assertEquals(res.status, 404);
    assertEquals((await server.app.request(OAUTH_PAGES.login)).status, 404);
  });
});
