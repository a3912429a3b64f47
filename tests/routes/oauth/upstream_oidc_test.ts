/**
 * Upstream sign-in against a real OpenID provider: npm `oidc-provider` (a certified
 * implementation) listening on 127.0.0.1 inside the test, driven through its own development
 * login and consent pages with form posts. Covers provisioning from claims, the link on later
 * sign-ins, localpart collisions, state/nonce/verifier/browser tampering, the provider's
 * refusal, deactivated users, the address guard, the legacy SSO flow down to /sync, and the
 * honesty of GET /login in each configuration.
 */
import Provider from "oidc-provider";
import http from "node:http";
import { assert, assertEquals } from "../../assert.ts";
import { FAST_HASHING } from "../client_harness.ts";
import { startTestServer } from "../test_server.ts";
import { OAUTH_PAGES, UPSTREAM_PATHS } from "../../../domain/oauth/oauth_paths.ts";
import { localpartFromClaim } from "../../../domain/oauth/upstream_sign_in.ts";
import {
  Browser,
  type BrowserResponse,
  csrfToken,
  forms,
  formTo,
  links,
  passwordSignIn,
  redirectParams,
} from "./browser_flow.ts";
import {
  authorizePath,
  createUser,
  exchangeCode,
  pkcePair,
  registerClient,
  WEB_REDIRECT,
} from "./oauth_client_fixture.ts";

/** The in-process server's origin as Browser sees it (and its public base URL). */
const TESSERA = "http://localhost";
const CALLBACK = `${TESSERA}${UPSTREAM_PATHS.callback("oidc")}`;
const SSO_REDIRECT = "/_matrix/client/v3/login/sso/redirect";

/** Who can sign in at the provider: login name -> claims. */
const PEOPLE: Record<string, Record<string, unknown>> = {
  "sub-alice": { preferred_username: "Alice", name: "Alice Liddell" },
  "sub-alice-2": { preferred_username: "alice", name: "Another Alice" },
  "sub-bob": { preferred_username: "bob", name: "Upstream Bob" },
  "sub-jose": { preferred_username: "José Müller!", name: "José" },
  "sub-carol": { preferred_username: "carol", name: "Carol" },
  "sub-erin": { preferred_username: "erin", name: "Erin" },
};

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * Start oidc-provider with one confidential client whose callback is Tessera's. With `prefix`,
 * the issuer has that path and a trailing slash (as Authentik's do), its discovery document is
 * served under it, and the endpoints it names at the root.
 */
function startProvider(prefix?: string) {
  const port = freePort();
  const issuer = prefix === undefined
    ? `http://127.0.0.1:${port}`
    : `http://127.0.0.1:${port}${prefix}/`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: "tessera",
      client_secret: "tessera-secret",
      redirect_uris: [CALLBACK],
      grant_types: ["authorization_code"],
      response_types: ["code"],
    }],
    pkce: { required: () => true },
    findAccount: (_ctx: unknown, sub: string) =>
      PEOPLE[sub] === undefined ? undefined : {
        accountId: sub,
        claims: () => ({ sub, ...PEOPLE[sub] }),
      },
    claims: { openid: ["sub"], profile: ["preferred_username", "name"] },
  });
  const handle = provider.callback();
  const server = http.createServer((req, res) => {
    if (prefix !== undefined && req.url?.startsWith(`${prefix}/`)) {
      req.url = req.url.slice(prefix.length);
    }
    handle(req, res);
  });
  server.listen(port, "127.0.0.1");
  return {
    issuer,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Idle keep-alive connections from fetch would hold close() open until they time out.
        server.closeAllConnections();
      }),
  };
}

/** A Tessera with the provider configured, plus a provider-side browser factory. */
async function setup(env: Record<string, string> = {}, providerPrefix?: string) {
  const op = startProvider(providerPrefix);
  const server = await startTestServer({
    TESSERA_PUBLIC_BASEURL: TESSERA,
    TESSERA_OIDC_ISSUER: op.issuer,
    TESSERA_OIDC_CLIENT_ID: "tessera",
    TESSERA_OIDC_CLIENT_SECRET: "tessera-secret",
    TESSERA_OIDC_NAME: "Test Provider",
    TESSERA_OIDC_ALLOW_PRIVATE: "true",
    ...env,
  }, FAST_HASHING);
  const tessera = () => new Browser((p, init) => server.app.request(p, init), { origin: TESSERA });
  return {
    op,
    server,
    tessera,
    close: async () => {
      server.close();
      await op.close();
    },
  };
}

/**
 * From Tessera's redirect to the provider, sign in there as `sub` with the provider's own login
 * form, consent, and return the provider's redirect back to Tessera (not yet followed).
 */
async function atProvider(
  issuer: string,
  toProvider: BrowserResponse,
  sub: string,
  choice: "consent" | "abort" = "consent",
): Promise<string> {
  const origin = new URL(issuer).origin;
  assert(toProvider.location?.startsWith(origin), `expected a redirect to the provider`);
  const op = new Browser((url, init) => fetch(url, init), { origin });
  let page = await op.follow(await op.get(toProvider.location!));
  for (let step = 0; step < 4; step++) {
    if (page.location !== undefined && !page.location.startsWith(origin)) return page.location;
    assertEquals(page.status, 200, page.text);
    const form = forms(page).find((f) => f.method === "post");
    assert(form !== undefined, `no form on the provider's page ${page.url}`);
    if (choice === "abort") {
      const abort = [...page.text.matchAll(/href="([^"]*\/abort)"/g)][0]?.[1];
      assert(abort !== undefined, "no abort link");
      page = await op.follow(await op.get(new URL(abort, page.url).toString()));
      continue;
    }
    const fields: Record<string, string> = form.fields.prompt === "login"
      ? { login: sub, password: "any" }
      : {};
    page = await op.follow(await op.submit(form, fields));
  }
  throw new Error("the provider did not send the browser back");
}

/** Sign in at the provider from a redirect to it and follow the callback on Tessera. */
async function throughProvider(
  issuer: string,
  tessera: Browser,
  toProvider: BrowserResponse,
  sub: string,
): Promise<BrowserResponse> {
  const back = await atProvider(issuer, toProvider, sub);
  assert(back.startsWith(CALLBACK), `expected the callback, got ${back}`);
  return await tessera.get(back);
}

/** The legacy flow from /login/sso/redirect/oidc to the loginToken in the client's URL. */
async function legacyLogin(
  ctx: Awaited<ReturnType<typeof setup>>,
  sub: string,
  redirectUrl = "https://client.example/cb?x=1",
): Promise<{ loginToken: string; location: string; confirmation: BrowserResponse }> {
  const tessera = ctx.tessera();
  const start = await tessera.get(
    `${SSO_REDIRECT}/oidc?redirectUrl=${encodeURIComponent(redirectUrl)}`,
  );
  assertEquals(start.status, 302);
  const callback = await throughProvider(ctx.op.issuer, tessera, start, sub);
  assertEquals(callback.status, 303, callback.text);
  const confirmation = await tessera.follow(callback);
  assertEquals(confirmation.status, 200, confirmation.text);
  const done = await tessera.submit(formTo(confirmation, SSO_REDIRECT));
  assertEquals(done.status, 302, done.text);
  const location = done.headers.get("location")!;
  const loginToken = new URL(location).searchParams.get("loginToken");
  assert(loginToken !== null, `no loginToken in ${location}`);
  return { loginToken, location, confirmation };
}

async function tokenLogin(
  server: Awaited<ReturnType<typeof startTestServer>>,
  loginToken: string,
): Promise<{ userId: string; accessToken: string }> {
  const res = await server.request("POST", "/_matrix/client/v3/login", {
    body: { type: "m.login.token", token: loginToken },
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return { userId: res.body.user_id, accessToken: res.body.access_token };
}

const TEST_OPTIONS = { sanitizeOps: false, sanitizeResources: false };

function assertStringIncludes(text: string, part: string): void {
  assert(text.includes(part), `expected ${JSON.stringify(part)} in: ${text.slice(0, 2000)}`);
}

function assertMatch(text: string, pattern: RegExp): void {
  assert(pattern.test(text), `expected ${text} to match ${pattern}`);
}

Deno.test({
  name:
    "legacy SSO: provider sign-in provisions a user from the claims; loginToken logs in and syncs",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await setup();
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
    const ctx = await setup({ TESSERA_OAUTH: "off" });
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
  name: "upstream: an issuer with a path and a trailing slash is discovered and trusted",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await setup({}, "/application/o/tessera");
    try {
      assert(ctx.op.issuer.endsWith("/application/o/tessera/"));
      // TESSERA_OIDC_ISSUER loses the slash in parsing; the provider's own issuer still counts.
      assertEquals(ctx.server.config.upstreamOidc?.issuer, ctx.op.issuer.slice(0, -1));
      const { loginToken } = await legacyLogin(ctx, "sub-carol");
      assertEquals((await tokenLogin(ctx.server, loginToken)).userId, "@carol:example.org:8448");
    } finally {
      await ctx.close();
    }
  },
});

Deno.test({
  name: "upstream: a second sign-in reuses the link; collisions get numeric suffixes",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await setup();
    try {
      // A local account named bob exists: the provider's bob must never sign in to it.
      const local = await ctx.server.request("POST", "/_matrix/client/v3/register", {
        body: { username: "bob", password: "local-password", auth: { type: "m.login.dummy" } },
      });
      assertEquals(local.status, 200, JSON.stringify(local.body));

      const first = await tokenLogin(ctx.server, (await legacyLogin(ctx, "sub-alice")).loginToken);
      const second = await tokenLogin(ctx.server, (await legacyLogin(ctx, "sub-alice")).loginToken);
      assertEquals(first.userId, "@alice:example.org:8448");
      assertEquals(second.userId, "@alice:example.org:8448");

      // Another subject whose claim maps to the same localpart.
      const other = await tokenLogin(
        ctx.server,
        (await legacyLogin(ctx, "sub-alice-2")).loginToken,
      );
      assertEquals(other.userId, "@alice1:example.org:8448");
      const bob = await tokenLogin(ctx.server, (await legacyLogin(ctx, "sub-bob")).loginToken);
      assertEquals(bob.userId, "@bob1:example.org:8448");
      // Accents dropped, invalid characters replaced.
      const jose = await tokenLogin(ctx.server, (await legacyLogin(ctx, "sub-jose")).loginToken);
      assertEquals(jose.userId, "@jose_muller:example.org:8448");
      // The provider-made accounts have no password: password login cannot reach them.
      const pw = await ctx.server.request("POST", "/_matrix/client/v3/login", {
        body: { type: "m.login.password", user: "alice", password: "" },
      });
      assertEquals(pw.status, 403);
    } finally {
      await ctx.close();
    }
  },
});

Deno.test({
  name: "upstream: start and callback sign the browser in and go to next (a local path only)",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await setup();
    try {
      const tessera = ctx.tessera();
      const start = await tessera.get(
        `${UPSTREAM_PATHS.start("oidc")}?next=${encodeURIComponent("/account?x=1")}`,
      );
      assertEquals(start.status, 303);
      assert(tessera.cookies.has("tessera_upstream"));
      const url = new URL(start.location!);
      assertEquals(url.searchParams.get("code_challenge_method"), "S256");
      assertEquals(url.searchParams.get("redirect_uri"), CALLBACK);
      assert(url.searchParams.get("nonce") && url.searchParams.get("state"));
      const callback = await throughProvider(ctx.op.issuer, tessera, start, "sub-carol");
      assertEquals(callback.status, 303);
      assertEquals(callback.headers.get("location"), "/account?x=1");
      assert(tessera.cookies.has("tessera_session"), "the browser is signed in");
      // The signed-in browser is asked to confirm a legacy SSO without another sign-in.
      const confirm = await tessera.get(`${SSO_REDIRECT}?redirectUrl=https://app.example/`);
      assertEquals(confirm.status, 200);
      assertStringIncludes(confirm.text, "@carol:example.org:8448");

      // Two sign-ins started in two tabs of one browser both complete, the older first.
      const tabs = ctx.tessera();
      const first = await tabs.get(`${UPSTREAM_PATHS.start("oidc")}?next=/one`);
      const second = await tabs.get(`${UPSTREAM_PATHS.start("oidc")}?next=/two`);
      const firstBack = await atProvider(ctx.op.issuer, first, "sub-carol");
      const secondBack = await atProvider(ctx.op.issuer, second, "sub-carol");
      assertEquals((await tabs.get(firstBack)).headers.get("location"), "/one");
      assertEquals((await tabs.get(secondBack)).headers.get("location"), "/two");

      // An absolute or scheme-relative next is not followed: the default local page instead.
      for (const next of ["https://evil.example/", "//evil.example/", "/\\evil.example"]) {
        const b = ctx.tessera();
        const s = await b.get(`${UPSTREAM_PATHS.start("oidc")}?next=${encodeURIComponent(next)}`);
        const cb = await throughProvider(ctx.op.issuer, b, s, "sub-carol");
        assertEquals(cb.status, 303);
        assertEquals(cb.headers.get("location"), "/account");
      }
    } finally {
      await ctx.close();
    }
  },
});

Deno.test({
  name: "upstream: tampered, replayed or transplanted callbacks are refused",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await setup();
    try {
      // Tampered state.
      let tessera = ctx.tessera();
      let start = await tessera.get(UPSTREAM_PATHS.start("oidc"));
      let back = new URL(await atProvider(ctx.op.issuer, start, "sub-carol"));
      back.searchParams.set("state", "x" + back.searchParams.get("state"));
      let res = await tessera.get(back.toString());
      assertEquals(res.status, 400);
      assert(!tessera.cookies.has("tessera_session"));

      // Replay: the first use works, the second is refused.
      tessera = ctx.tessera();
      start = await tessera.get(UPSTREAM_PATHS.start("oidc"));
      back = new URL(await atProvider(ctx.op.issuer, start, "sub-carol"));
      const binding = tessera.cookies.get("tessera_upstream")!;
      assertEquals((await tessera.get(back.toString())).status, 303);
      const replay = ctx.tessera();
      replay.cookies.set("tessera_upstream", binding);
      assertEquals((await replay.get(back.toString())).status, 400);

      // A callback carried to another browser (login CSRF): no binding cookie, refused, and
      // the flow is spent so the right browser cannot be raced either.
      tessera = ctx.tessera();
      start = await tessera.get(UPSTREAM_PATHS.start("oidc"));
      back = new URL(await atProvider(ctx.op.issuer, start, "sub-carol"));
      const victim = ctx.tessera();
      res = await victim.get(back.toString());
      assertEquals(res.status, 400);
      assertStringIncludes(res.text, "another browser");
      assert(!victim.cookies.has("tessera_session"));

      // Another issuer named in the response (RFC 9207 mix-up defence): refused.
      tessera = ctx.tessera();
      start = await tessera.get(UPSTREAM_PATHS.start("oidc"));
      back = new URL(await atProvider(ctx.op.issuer, start, "sub-carol"));
      assertEquals(back.searchParams.get("iss"), ctx.op.issuer);
      back.searchParams.set("iss", "https://evil.example");
      res = await tessera.get(back.toString());
      assertEquals(res.status, 400);
      assertStringIncludes(res.text, "iss");
      assert(!tessera.cookies.has("tessera_session"));

      // The nonce kept for the flow no longer matches the ID token's: refused.
      tessera = ctx.tessera();
      start = await tessera.get(UPSTREAM_PATHS.start("oidc"));
      await rewriteFlows(ctx.server.kv, (flow) => ({ ...flow, nonce: "not-the-nonce" }));
      res = await tessera.get(await atProvider(ctx.op.issuer, start, "sub-carol"));
      assertEquals(res.status, 400);
      assertStringIncludes(res.text, "nonce");

      // A different PKCE verifier: the provider refuses the code.
      tessera = ctx.tessera();
      start = await tessera.get(UPSTREAM_PATHS.start("oidc"));
      await rewriteFlows(ctx.server.kv, (flow) => ({
        ...flow,
        codeVerifier: "a".repeat(43),
      }));
      res = await tessera.get(await atProvider(ctx.op.issuer, start, "sub-carol"));
      assertEquals(res.status, 400);
      assertStringIncludes(res.text, "invalid_grant");
      assert(!tessera.cookies.has("tessera_session"));

      // The user cancels at the provider.
      tessera = ctx.tessera();
      start = await tessera.get(UPSTREAM_PATHS.start("oidc"));
      res = await tessera.get(await atProvider(ctx.op.issuer, start, "sub-carol", "abort"));
      assertEquals(res.status, 403);
      assertStringIncludes(res.text, "access_denied");
    } finally {
      await ctx.close();
    }
  },
});

/** Rewrite every stored upstream flow (the test stands in for a tampered store). */
async function rewriteFlows(
  kv: Deno.Kv,
  change: (flow: Record<string, unknown>) => Record<string, unknown>,
): Promise<void> {
  for await (const entry of kv.list<Record<string, unknown>>({ prefix: ["upstreamstate_flow"] })) {
    await kv.set(entry.key, change(entry.value));
  }
}

Deno.test({
  name: "upstream: two first sign-ins of one subject at once end in one linked user",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await setup();
    try {
      const browsers = [ctx.tessera(), ctx.tessera()];
      const backs: string[] = [];
      for (const b of browsers) {
        const start = await b.get(`${SSO_REDIRECT}/oidc?redirectUrl=https://app.example/`);
        backs.push(await atProvider(ctx.op.issuer, start, "sub-erin"));
      }
      const callbacks = await Promise.all(browsers.map((b, i) => b.get(backs[i])));
      const users = await Promise.all(callbacks.map(async (callback, i) => {
        assertEquals(callback.status, 303, callback.text);
        const page = await browsers[i].follow(callback);
        return page.text.match(/signed in as <strong>([^<]+)<\/strong>/)?.[1];
      }));
      assertEquals(users[0], "@erin:example.org:8448");
      assertEquals(users[1], users[0]);
    } finally {
      await ctx.close();
    }
  },
});

Deno.test({
  name: "m.login.sso UIA: a passwordless upstream user confirms in the browser to delete a device",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await setup();
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
  name: "upstream: a deactivated linked user is refused",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await setup();
    try {
      const { userId } = await tokenLogin(
        ctx.server,
        (await legacyLogin(ctx, "sub-carol")).loginToken,
      );
      await ctx.server.deps.accounts.deactivate(userId);
      const tessera = ctx.tessera();
      const start = await tessera.get(UPSTREAM_PATHS.start("oidc"));
      const res = await throughProvider(ctx.op.issuer, tessera, start, "sub-carol");
      assertEquals(res.status, 403);
      assertStringIncludes(res.text, "deactivated");
      assert(!tessera.cookies.has("tessera_session"));
    } finally {
      await ctx.close();
    }
  },
});

Deno.test({
  name: "upstream: a provider on a loopback address is refused without TESSERA_OIDC_ALLOW_PRIVATE",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await setup({ TESSERA_OIDC_ALLOW_PRIVATE: "false" });
    try {
      const res = await ctx.tessera().get(UPSTREAM_PATHS.start("oidc"));
      assertEquals(res.status, 500);
      assertStringIncludes(res.text, "cannot be reached");
      assert(!res.headers.get("location"));
    } finally {
      await ctx.close();
    }
  },
});

Deno.test({
  name: "legacy SSO: bad redirectUrl, unknown IdP, and confirmation without session or CSRF",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await setup();
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

Deno.test({
  name: "OAuth authorization through the provider: sign-in page button, consent, code, token",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await setup();
    try {
      const clientId = await registerClient(ctx.server);
      const { verifier, challenge } = pkcePair();
      const tessera = ctx.tessera();
      const login = await tessera.follow(await tessera.get(authorizePath(clientId, challenge)));
      assertEquals(new URL(login.url).pathname, OAUTH_PAGES.login);
      const button = links(login).find((l) => new URL(l).pathname === UPSTREAM_PATHS.start("oidc"));
      assert(button !== undefined, "the sign-in page offers the provider");
      assertStringIncludes(login.text, "Continue with Test Provider");
      const start = await tessera.get(button);
      const callback = await throughProvider(ctx.op.issuer, tessera, start, "sub-alice");
      const consent = await tessera.follow(callback);
      assert(new URL(consent.url).pathname.startsWith(OAUTH_PAGES.consent), consent.url);
      assertStringIncludes(consent.text, "@alice:example.org:8448");
      const allowed = await tessera.submit(formTo(consent, OAUTH_PAGES.consent), {}, "allow");
      assertEquals(allowed.status, 303);
      assert(allowed.location!.startsWith(`${WEB_REDIRECT}?`), allowed.location);
      const code = redirectParams(allowed.location!).get("code")!;
      const tokens = await exchangeCode(ctx.server, { code, clientId, verifier });
      assertEquals(tokens.status, 200, JSON.stringify(tokens.body));
      const whoami = await ctx.server.request("GET", "/_matrix/client/v3/account/whoami", {
        token: tokens.body.access_token,
      });
      assertEquals(whoami.body.user_id, "@alice:example.org:8448");
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

Deno.test("localpartFromClaim maps claims to the strict localpart grammar", () => {
  assertEquals(localpartFromClaim("Alice", "example.org"), "alice");
  assertEquals(localpartFromClaim("José Müller!", "example.org"), "jose_muller");
  assertEquals(localpartFromClaim("a@b.example", "example.org"), "a_b.example");
  assertEquals(localpartFromClaim("..__", "example.org"), null);
  assertEquals(localpartFromClaim("名前", "example.org"), null);
  assertEquals(localpartFromClaim(undefined, "example.org"), null);
  assertEquals(localpartFromClaim(12345, "example.org"), "12345");
  const long = localpartFromClaim("x".repeat(400), "example.org")!;
  assertEquals(new TextEncoder().encode(`@${long}99:example.org`).byteLength, 255);
});
