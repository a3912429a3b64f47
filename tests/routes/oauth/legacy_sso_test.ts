/**
 * The legacy login API around upstream sign-in: `m.login.sso` (GET /login/sso/redirect, the
 * confirmation naming the redirect host, then `loginToken` and `m.login.token` down to /sync),
 * with and without an upstream provider and with the OAuth API on or off; the `m.login.sso` UIA
 * fallback page; and GET /login listing only the flows the configuration offers. The provider
 * is npm `oidc-provider` (upstream_provider_fixture.ts).
 */
import { assert, assertEquals } from "../../assert.ts";
import { FAST_HASHING } from "../client_harness.ts";
import { startTestServer } from "../test_server.ts";
import { OAUTH_PAGES, UPSTREAM_PATHS } from "../../../domain/oauth/oauth_paths.ts";
import { Browser, csrfToken, formTo, links, passwordSignIn } from "./browser_flow.ts";
import { createUser } from "./oauth_client_fixture.ts";
import {
  assertMatch,
  assertStringIncludes,
  legacyLogin,
  SSO_REDIRECT,
  startWithProvider,
  TESSERA,
  TEST_OPTIONS,
  throughProvider,
  tokenLogin,
} from "./upstream_provider_fixture.ts";

Deno.test({
  name:
    "legacy SSO: provider sign-in provisions a user from the claims; loginToken logs in and syncs",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await startWithProvider();
    try {
      const { loginToken, location, confirmation } = await legacyLogin(ctx, "sub-alice");
      // The confirmation names the host the token goes to and who is signed in.
      assertStringIncludes(confirmation.text, "client.example");
      assertStringIncludes(confirmation.text, "@alice:example.org:8448");
      assert(!/<script/i.test(confirmation.text));
      // The client's URL keeps its own query; the token is appended.
      assertMatch(location, /^https:\/\/client\.example\/cb\?x=1&loginToken=/);
      const { userId, accessToken } = await tokenLogin(ctx.server, loginToken);
      assertEquals(userId, "@alice:example.org:8448");
      const profile = await ctx.server.request("GET", `/_matrix/client/v3/profile/${userId}`);
      assertEquals(profile.body.displayname, "Alice Liddell");
      const sync = await ctx.server.request("GET", "/_matrix/client/v3/sync?timeout=0", {
        token: accessToken,
      });
      assertEquals(sync.status, 200);
      // The token is single use.
      const again = await ctx.server.request("POST", "/_matrix/client/v3/login", {
        body: { type: "m.login.token", token: loginToken },
      });
      assertEquals(again.status, 403);
    } finally {
      await ctx.close();
    }
  },
});

Deno.test({
  name: "legacy SSO with the OAuth API off: /login/sso/redirect goes straight to the provider",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await startWithProvider({ TESSERA_OAUTH: "off" });
    try {
      const tessera = ctx.tessera();
      const start = await tessera.get(`${SSO_REDIRECT}?redirectUrl=https://app.example/`);
      assertEquals(start.status, 302);
      const callback = await throughProvider(ctx.op.issuer, tessera, start, "sub-carol");
      const confirmation = await tessera.follow(callback);
      assertStringIncludes(confirmation.text, "app.example");
      // No OAuth pages: no sign-out link to a page that is not served.
      assert(!confirmation.text.includes("/account/logout"));
      const done = await tessera.submit(formTo(confirmation, SSO_REDIRECT));
      const token = new URL(done.headers.get("location")!).searchParams.get("loginToken")!;
      assertEquals((await tokenLogin(ctx.server, token)).userId, "@carol:example.org:8448");
      // And the OAuth pages really are off.
      assertEquals((await tessera.get("/account/login")).status, 404);
    } finally {
      await ctx.close();
    }
  },
});

Deno.test({
  name: "m.login.sso UIA: a passwordless upstream user confirms in the browser to delete a device",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await startWithProvider();
    try {
      const a = await tokenLogin(ctx.server, (await legacyLogin(ctx, "sub-carol")).loginToken);
      const b = await tokenLogin(ctx.server, (await legacyLogin(ctx, "sub-carol")).loginToken);
      const whoB = await ctx.server.request("GET", "/_matrix/client/v3/account/whoami", {
        token: b.accessToken,
      });
      const deleteB = (auth?: unknown) =>
        ctx.server.request("POST", "/_matrix/client/v3/delete_devices", {
          token: a.accessToken,
          body: { devices: [whoB.body.device_id], ...(auth ? { auth } : {}) },
        });
      const first = await deleteB();
      assertEquals(first.status, 401);
      assertEquals(first.body.flows, [
        { stages: ["m.login.password"] },
        { stages: ["m.login.sso"] },
      ]);
      const session = first.body.session;
      // Submitting the stage before confirming in the browser: the challenge again.
      const early = await deleteB({ type: "m.login.sso", session });
      assertEquals([early.status, early.body.errcode], [401, "M_UNAUTHORIZED"]);

      const fallback = `/_matrix/client/v3/auth/m.login.sso/fallback/web?session=${session}`;
      // Another user's browser, freshly signed in, cannot confirm carol's session.
      const stranger = ctx.tessera();
      await stranger.follow(
        await throughProvider(
          ctx.op.issuer,
          stranger,
          await stranger.get(UPSTREAM_PATHS.start("oidc")),
          "sub-erin",
        ),
      );
      // Carol's session is not even described to them, and a posted confirmation is refused.
      const theirs = await stranger.get(fallback);
      assertEquals(theirs.status, 400);
      const refused = await stranger.submit({
        method: "post",
        action: new URL(fallback, TESSERA).href,
        fields: { csrf: csrfToken(await stranger.get(OAUTH_PAGES.account)), session },
        buttons: [],
      });
      assertEquals(refused.status, 403);

      // Carol's browser: not signed in, so the page sends it to the provider and back.
      const browser = ctx.tessera();
      const page = await browser.get(fallback);
      assertEquals(page.status, 200);
      assert(!/<script/i.test(page.text));
      const signIn = links(page).find((l) => new URL(l).pathname === UPSTREAM_PATHS.start("oidc"));
      assert(signIn !== undefined, page.text);
      const callback = await throughProvider(
        ctx.op.issuer,
        browser,
        await browser.get(signIn),
        "sub-carol",
      );
      const confirm = await browser.follow(callback);
      assertEquals(
        new URL(confirm.url).pathname,
        "/_matrix/client/v3/auth/m.login.sso/fallback/web",
      );
      // A forged confirmation (another site's origin) is refused.
      browser.postOrigin = "https://evil.example";
      assertEquals((await browser.submit(formTo(confirm, "/fallback/web"))).status, 403);
      browser.postOrigin = TESSERA;
      const done = await browser.submit(formTo(confirm, "/fallback/web"));
      assertEquals(done.status, 200, done.text);
      assertStringIncludes(done.text, "Go back to the app");

      const retried = await deleteB({ session });
      assertEquals(retried.status, 200, JSON.stringify(retried.body));
      const dead = await ctx.server.request("GET", "/_matrix/client/v3/account/whoami", {
        token: b.accessToken,
      });
      assertEquals(dead.status, 401);
    } finally {
      await ctx.close();
    }
  },
});

Deno.test({
  name: "legacy SSO: bad redirectUrl, unknown IdP, and confirmation without session or CSRF",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await startWithProvider();
    try {
      const b = ctx.tessera();
      assertEquals((await b.get(`${SSO_REDIRECT}/oidc`)).status, 400);
      // Too long to travel back through the sign-in page's next= once encoded.
      const tooLong = `https://app.example/${"é".repeat(400)}`;
      const bads = ["javascript:alert(1)", "data:text/html,x", "not a url", "https://u:p@x/"];
      for (const bad of [...bads, tooLong]) {
        const res = await b.get(`${SSO_REDIRECT}/oidc?redirectUrl=${encodeURIComponent(bad)}`);
        assertEquals(res.status, 400, bad);
      }
      const unknown = await b.get(`${SSO_REDIRECT}/github?redirectUrl=https://app.example/`);
      assertEquals(unknown.status, 404);
      // r0 is served too.
      const r0 = await b.get(
        `/_matrix/client/r0/login/sso/redirect/oidc?redirectUrl=https://app.example/`,
      );
      assertEquals(r0.status, 302);

      // Not signed in: no token.
      const anon = await ctx.tessera().post(SSO_REDIRECT, {
        redirectUrl: "https://app.example/",
        csrf: "x",
      });
      assertEquals(anon.status, 403);
      // Signed in, but a forged form (wrong CSRF token, or another site's origin).
      const { confirmation } = await legacyLogin(ctx, "sub-carol");
      const browser = ctx.tessera();
      const start = await browser.get(`${SSO_REDIRECT}/oidc?redirectUrl=https://app.example/`);
      await browser.follow(await throughProvider(ctx.op.issuer, browser, start, "sub-carol"));
      const forged = await browser.post(SSO_REDIRECT, {
        redirectUrl: "https://evil.example/",
        csrf: formTo(confirmation, SSO_REDIRECT).fields.csrf,
      });
      assertEquals(forged.status, 403);
      browser.postOrigin = "https://evil.example";
      const page = await browser.get(`${SSO_REDIRECT}?redirectUrl=https://evil.example/`);
      const crossSite = await browser.submit(formTo(page, SSO_REDIRECT));
      assertEquals(crossSite.status, 403);
    } finally {
      await ctx.close();
    }
  },
});

Deno.test("legacy SSO through the password sign-in page, no upstream provider", async () => {
  const server = await startTestServer({ TESSERA_PUBLIC_BASEURL: TESSERA }, FAST_HASHING);
  try {
    await createUser(server, "dana", "pw-dana-123");
    const browser = new Browser((p, init) => server.app.request(p, init), { origin: TESSERA });
    const redirectUrl = "element://vector/webapp/";
    const start = await browser.get(
      `${SSO_REDIRECT}?redirectUrl=${encodeURIComponent(redirectUrl)}`,
    );
    assertEquals(start.status, 302);
    const next = new URL(start.location!).searchParams.get("next")!;
    const signedIn = await passwordSignIn(browser, "dana", "pw-dana-123", next);
    assertEquals(signedIn.status, 303);
    const confirmation = await browser.follow(signedIn);
    assertEquals(confirmation.status, 200, confirmation.text);
    // A private-use scheme is named by its scheme and host.
    assertStringIncludes(confirmation.text, "element://vector");
    const done = await browser.submit(formTo(confirmation, SSO_REDIRECT));
    assertEquals(done.status, 302);
    const location = done.headers.get("location")!;
    assert(location.startsWith("element://vector/webapp/?loginToken="), location);
    const login = await server.request("POST", "/_matrix/client/v3/login", {
      body: { type: "m.login.token", token: new URL(location).searchParams.get("loginToken") },
    });
    assertEquals(login.body.user_id, "@dana:example.org:8448");
  } finally {
    server.close();
  }
});

Deno.test("GET /login lists only what the configuration offers", async () => {
  const cases: { env: Record<string, string>; flows: unknown[] }[] = [
    {
      env: {},
      flows: [
        { type: "m.login.password" },
        { type: "m.login.token", get_login_token: true },
        { type: "m.login.sso", oauth_aware_preferred: true },
      ],
    },
    {
      env: { TESSERA_OAUTH: "off" },
      flows: [{ type: "m.login.password" }, { type: "m.login.token", get_login_token: true }],
    },
    {
      env: {
        TESSERA_OAUTH: "off",
        TESSERA_PASSWORD_LOGIN: "off",
        TESSERA_OIDC_ISSUER: "https://idp.example",
        TESSERA_OIDC_CLIENT_ID: "c",
        TESSERA_OIDC_ID: "example-idp",
        TESSERA_OIDC_NAME: "Example",
      },
      flows: [
        { type: "m.login.token", get_login_token: true },
        { type: "m.login.sso", identity_providers: [{ id: "example-idp", name: "Example" }] },
      ],
    },
    {
      env: {
        TESSERA_PASSWORD_LOGIN: "off",
        TESSERA_OIDC_ISSUER: "https://idp.example",
        TESSERA_OIDC_CLIENT_ID: "c",
      },
      flows: [
        { type: "m.login.token", get_login_token: true },
        {
          type: "m.login.sso",
          identity_providers: [{ id: "oidc", name: "OpenID Connect" }],
          oauth_aware_preferred: true,
        },
      ],
    },
  ];
  for (const { env, flows } of cases) {
    const server = await startTestServer(env);
    try {
      const res = await server.request("GET", "/_matrix/client/v3/login");
      assertEquals(res.body.flows, flows, JSON.stringify(env));
      if (env.TESSERA_PASSWORD_LOGIN === "off") {
        const login = await server.request("POST", "/_matrix/client/v3/login", {
          body: { type: "m.login.password", user: "someone", password: "x" },
        });
        assertEquals(login.status, 400);
        assertEquals(login.body.errcode, "M_UNKNOWN");
      }
      if (env.TESSERA_OAUTH === "off" && env.TESSERA_OIDC_ISSUER === undefined) {
        // Nothing to sign in with in a browser: no SSO is offered, and the redirect says so.
        const sso = await server.app.request(`${SSO_REDIRECT}?redirectUrl=https://app.example/`);
        assertEquals(sso.status, 404);
      }
    } finally {
      server.close();
    }
  }
});

Deno.test("legacy SSO without an IdP: sign-in (or registration) page, OAuth on", async () => {
  const server = await startTestServer({ TESSERA_PUBLIC_BASEURL: TESSERA });
  try {
    const res = await server.app.request(`${SSO_REDIRECT}?redirectUrl=https://app.example/x`);
    assertEquals(res.status, 302);
    const location = new URL(res.headers.get("location")!, TESSERA);
    assertEquals(location.pathname, "/account/login");
    assertEquals(
      location.searchParams.get("next"),
      `${SSO_REDIRECT}?redirectUrl=${encodeURIComponent("https://app.example/x")}`,
    );
    // action=register (spec 1.18) opens the registration page, and comes back the same way.
    const register = await server.app.request(
      `${SSO_REDIRECT}?redirectUrl=https://app.example/x&action=register`,
    );
    const to = new URL(register.headers.get("location")!, TESSERA);
    assertEquals(to.pathname, "/account/register");
    assertEquals(to.searchParams.get("next"), location.searchParams.get("next"));
  } finally {
    server.close();
  }
});
