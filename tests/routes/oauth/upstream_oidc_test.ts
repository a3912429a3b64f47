/**
 * Upstream sign-in against a real OpenID provider (upstream_provider_fixture.ts: npm
 * `oidc-provider` on 127.0.0.1, driven through its own login and consent pages with form
 * posts): provisioning from claims, the link on later sign-ins, localpart collisions,
 * state/nonce/verifier/browser tampering, the provider's refusal, deactivated users, the
 * address guard, and an OAuth authorization through the sign-in page's provider button.
 * The legacy SSO flow and GET /login are in legacy_sso_test.ts.
 */
import { assert, assertEquals } from "../../assert.ts";
import { OAUTH_PAGES, UPSTREAM_PATHS } from "../../../domain/oauth/oauth_paths.ts";
import { localpartFromClaim } from "../../../domain/oauth/upstream_sign_in.ts";
import { formTo, links, redirectParams } from "./browser_flow.ts";
import {
  authorizePath,
  exchangeCode,
  pkcePair,
  registerClient,
  WEB_REDIRECT,
} from "./oauth_client_fixture.ts";
import {
  assertStringIncludes,
  atProvider,
  CALLBACK,
  legacyLogin,
  SSO_REDIRECT,
  startWithProvider,
  TEST_OPTIONS,
  throughProvider,
  tokenLogin,
} from "./upstream_provider_fixture.ts";

Deno.test({
  name: "upstream: an issuer with a path and a trailing slash is discovered and trusted",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await startWithProvider({}, "/application/o/tessera");
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
    const ctx = await startWithProvider();
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
    const ctx = await startWithProvider();
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
    const ctx = await startWithProvider();
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
    const ctx = await startWithProvider();
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
  name: "upstream: a deactivated linked user is refused",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await startWithProvider();
    try {
      const { userId } = await tokenLogin(
        ctx.server,
        (await legacyLogin(ctx, "sub-carol")).loginToken,
      );
      await ctx.server.deps.accounts.deactivations.deactivate(userId);
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
    const ctx = await startWithProvider({ TESSERA_OIDC_ALLOW_PRIVATE: "false" });
    try {
      const res = await ctx.tessera().get(UPSTREAM_PATHS.start("oidc"));
      assertEquals(res.status, 502);
      assertStringIncludes(res.text, "cannot be reached");
      assert(!res.headers.get("location"));
    } finally {
      await ctx.close();
    }
  },
});

Deno.test({
  name: "OAuth authorization through the provider: sign-in page button, consent, code, token",
  ...TEST_OPTIONS,
  fn: async () => {
    const ctx = await startWithProvider();
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
