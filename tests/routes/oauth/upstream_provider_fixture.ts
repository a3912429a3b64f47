/**
 * What the upstream sign-in tests share (upstream_oidc_test.ts, legacy_sso_test.ts): npm
 * `oidc-provider` (a certified OpenID provider) listening on 127.0.0.1 inside the test, with one
 * confidential client whose callback is Tessera's; a Tessera configured to use it; and the
 * browser's way through the provider's own development login and consent pages.
 */
import Provider from "oidc-provider";
import http from "node:http";
import { assert, assertEquals } from "../../assert.ts";
import { FAST_HASHING } from "../client_harness.ts";
import { startTestServer } from "../test_server.ts";
import { UPSTREAM_PATHS } from "../../../domain/oauth/oauth_paths.ts";
import { Browser, type BrowserResponse, forms, formTo } from "./browser_flow.ts";

/** The in-process server's origin as Browser sees it (and its public base URL). */
export const TESSERA = "http://localhost";
/** Tessera's callback for the provider `oidc` (the client registered at the provider). */
export const CALLBACK = `${TESSERA}${UPSTREAM_PATHS.callback("oidc")}`;
/** The legacy SSO redirect endpoint (spec: "Client login via SSO"). */
export const SSO_REDIRECT = "/_matrix/client/v3/login/sso/redirect";

/** Who can sign in at the provider: login name -> claims. */
const PEOPLE: Record<string, Record<string, unknown>> = {
  "sub-alice": { preferred_username: "Alice", name: "Alice Liddell" },
  "sub-alice-2": { preferred_username: "alice", name: "Another Alice" },
  "sub-bob": { preferred_username: "bob", name: "Upstream Bob" },
  "sub-jose": { preferred_username: "José Müller!", name: "José" },
  "sub-carol": { preferred_username: "carol", name: "Carol" },
  "sub-erin": { preferred_username: "erin", name: "Erin" },
};

/**
 * Start oidc-provider with one confidential client whose callback is Tessera's. With `prefix`,
 * the issuer has that path and a trailing slash (as Authentik's do), its discovery document is
 * served under it, and the endpoints it names at the root.
 */
export async function startProvider(prefix?: string) {
  // Listen first, on a port the system picks, and only then build the provider with an issuer
  // naming that port: a port picked in advance could be taken by a parallel test meanwhile, and
  // a request sent before `listen` finished would be refused.
  const route: { handle?: (req: http.IncomingMessage, res: http.ServerResponse) => void } = {};
  const server = http.createServer((req, res) => {
    if (prefix !== undefined && req.url?.startsWith(`${prefix}/`)) {
      req.url = req.url.slice(prefix.length);
    }
    route.handle!(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as { port: number };
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
  route.handle = provider.callback();
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
export async function startWithProvider(env: Record<string, string> = {}, providerPrefix?: string) {
  const op = await startProvider(providerPrefix);
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
export async function atProvider(
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
export async function throughProvider(
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
export async function legacyLogin(
  ctx: Awaited<ReturnType<typeof startWithProvider>>,
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

/** POST /login with `m.login.token`; the session it gives. */
export async function tokenLogin(
  server: Awaited<ReturnType<typeof startTestServer>>,
  loginToken: string,
): Promise<{ userId: string; accessToken: string }> {
  const res = await server.request("POST", "/_matrix/client/v3/login", {
    body: { type: "m.login.token", token: loginToken },
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return { userId: res.body.user_id, accessToken: res.body.access_token };
}

/**
 * Deno.test options for tests that run the provider: oidc-provider (node:http) leaves timers
 * and sockets the sanitizers would report.
 */
export const TEST_OPTIONS = { sanitizeOps: false, sanitizeResources: false };

/** `text` contains `part` (the message shows the start of `text`). */
export function assertStringIncludes(text: string, part: string): void {
  assert(text.includes(part), `expected ${JSON.stringify(part)} in: ${text.slice(0, 2000)}`);
}

/** `text` matches `pattern`. */
export function assertMatch(text: string, pattern: RegExp): void {
  assert(pattern.test(text), `expected ${text} to match ${pattern}`);
}
