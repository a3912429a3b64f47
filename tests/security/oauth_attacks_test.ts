/**
 * Attacks on the OAuth 2.0 grants and pages over real HTTP: PKCE downgrades at the authorization
 * and token endpoints, authorization code replay and injection, refresh token reuse, CSRF on
 * the consent and sign-in forms, and open redirects (unregistered redirect URIs, `next=`).
 * Redirect URI registration has its own table: oauth_registration_attacks_test.ts.
 */
import { assert, assertEquals } from "../assert.ts";
import { OAUTH_ENDPOINTS, OAUTH_PAGES } from "../../domain/oauth/oauth_paths.ts";
import { registerUser } from "../routes/client_harness.ts";
import {
  Browser,
  type BrowserResponse,
  formTo,
  passwordSignIn,
  redirectParams,
} from "../routes/oauth/browser_flow.ts";
import {
  kvSnapshot,
  type ListeningServer,
  pkcePair,
  postForm,
  registration,
  withServer,
} from "./oauth_attack_support.ts";

const PASSWORD = "attack test password";
const WEB_REDIRECT = "https://example.com/callback";
const NATIVE_REDIRECT = "http://127.0.0.1/callback";

/** Register a client (web by default) and return its ID. */
async function registerClient(
  server: ListeningServer,
  overrides: Record<string, unknown> = {},
): Promise<string> {
  const res = await server.request("POST", OAUTH_ENDPOINTS.registration, {
    body: registration(overrides),
  });
  assertEquals(res.status, 201, JSON.stringify(res.body));
  return res.body.client_id;
}

/** A browser signed in as `localpart` (registered with PASSWORD if new). */
async function signedInBrowser(server: ListeningServer, localpart: string): Promise<Browser> {
  await registerUser(server.inner, localpart, PASSWORD).catch(() => {});
  const browser = new Browser(fetch, { origin: server.baseUrl });
  const res = await passwordSignIn(browser, localpart, PASSWORD, OAUTH_PAGES.account);
  assert(res.status === 302 || res.status === 303, `sign-in: ${res.status} ${res.text}`);
  return browser;
}

/** Authorization request parameters; `undefined` values are left out. */
function authorizationUrl(
  server: ListeningServer,
  params: Record<string, string | undefined>,
): string {
  const url = new URL(OAUTH_ENDPOINTS.authorization, server.baseUrl);
  const all: Record<string, string | undefined> = {
    response_type: "code",
    response_mode: "query",
    scope: "urn:matrix:client:api:*",
    state: "the-state",
    code_challenge_method: "S256",
    ...params,
  };
  for (const [k, v] of Object.entries(all)) if (v !== undefined) url.searchParams.set(k, v);
  return url.toString();
}

/** Open an authorization request in a signed-in browser: the consent page (followed). */
async function consentPage(browser: Browser, url: string): Promise<BrowserResponse> {
  const page = await browser.open(url);
  assertEquals(page.status, 200, `${page.url}: ${page.text}`);
  assert(new URL(page.url).pathname.startsWith(OAUTH_PAGES.consent), `landed on ${page.url}`);
  return page;
}

/** Consent to a request and return the code the client receives. */
async function obtainCode(
  server: ListeningServer,
  browser: Browser,
  clientId: string,
  challenge: string,
  redirectUri = WEB_REDIRECT,
): Promise<string> {
  const page = await consentPage(
    browser,
    authorizationUrl(server, {
      client_id: clientId,
      redirect_uri: redirectUri,
      code_challenge: challenge,
    }),
  );
  const back = await browser.submit(formTo(page, OAUTH_PAGES.consent), {}, "allow");
  assert(back.location?.startsWith(redirectUri), `consent: ${back.status} ${back.location}`);
  const params = redirectParams(back.location!);
  assertEquals(params.get("state"), "the-state");
  return params.get("code")!;
}

/** The token endpoint's authorization_code grant. */
function exchange(
  server: ListeningServer,
  fields: { code: string; clientId: string; verifier?: string; redirectUri?: string },
) {
  return postForm(server.baseUrl, OAUTH_ENDPOINTS.token, {
    grant_type: "authorization_code",
    code: fields.code,
    client_id: fields.clientId,
    redirect_uri: fields.redirectUri ?? WEB_REDIRECT,
    ...(fields.verifier !== undefined ? { code_verifier: fields.verifier } : {}),
  });
}

/** The token endpoint's refresh_token grant. */
function refresh(server: ListeningServer, clientId: string, refreshToken: string) {
  return postForm(server.baseUrl, OAUTH_ENDPOINTS.token, {
    grant_type: "refresh_token",
    refresh_token: refreshToken,
    client_id: clientId,
  });
}

/** whoami's status with `token`. */
async function whoamiStatus(server: ListeningServer, token: string): Promise<number> {
  return (await server.request("GET", "/_matrix/client/v3/account/whoami", { token })).status;
}

/** The user's device IDs (read from the store through the account service). */
async function deviceIds(server: ListeningServer, userId: string): Promise<string[]> {
  const devices = await server.inner.deps.accounts.listDevices(userId);
  return devices.map((d) => d.deviceId).sort();
}

Deno.test("PKCE downgrade at the authorization endpoint: plain, missing or malformed challenges are refused", async () => {
  await withServer(async (server) => {
    const clientId = await registerClient(server);
    const browser = await signedInBrowser(server, "alice");
    const { challenge } = await pkcePair();
    const attempts: [string, Record<string, string | undefined>][] = [
      ["plain", { code_challenge_method: "plain", code_challenge: "a".repeat(43) }],
      ["no method (RFC 7636 defaults to plain)", {
        code_challenge_method: undefined,
        code_challenge: challenge,
      }],
      ["no challenge", { code_challenge: undefined }],
      ["no challenge nor method", { code_challenge: undefined, code_challenge_method: undefined }],
      ["a short challenge", { code_challenge: challenge.slice(0, 20) }],
      ["a challenge with padding", { code_challenge: `${challenge.slice(0, 42)}=` }],
      ["an unknown method", { code_challenge_method: "S512", code_challenge: challenge }],
    ];
    for (const [why, params] of attempts) {
      const url = authorizationUrl(server, {
        client_id: clientId,
        redirect_uri: WEB_REDIRECT,
        code_challenge: challenge,
        ...params,
      });
      const res = await browser.follow(await browser.get(url));
      // The client and redirect URI are valid, so the error goes back to the client.
      assert(res.location?.startsWith(WEB_REDIRECT), `${why}: ${res.status} ${res.url}`);
      const back = redirectParams(res.location!);
      assertEquals(back.get("error"), "invalid_request", `${why}: ${res.location}`);
      assertEquals(back.get("state"), "the-state");
      assert(back.get("code") === null, `${why}: a code was issued`);
    }
  });
});

Deno.test("PKCE at the token endpoint: no verifier, a wrong one or the challenge itself gets nothing", async () => {
  await withServer(async (server) => {
    const clientId = await registerClient(server);
    const browser = await signedInBrowser(server, "alice");
    const userId = "@alice:" + server.inner.config.serverName;
    const devicesBefore = await deviceIds(server, userId);
    const { verifier, challenge } = await pkcePair();
    const other = await pkcePair();
    const wrongVerifiers: [string, string | undefined][] = [
      ["no verifier", undefined],
      ["an empty verifier", ""],
      ["the challenge as the verifier (a plain downgrade)", challenge],
      ["another flow's verifier", other.verifier],
      ["the verifier with one character changed", `${verifier.slice(0, -1)}A`],
      ["a too short verifier", "abc"],
    ];
    for (const [why, attempt] of wrongVerifiers) {
      const code = await obtainCode(server, browser, clientId, challenge);
      const res = await exchange(server, { code, clientId, verifier: attempt });
      assertEquals(res.status, 400, `${why}: ${JSON.stringify(res.body)}`);
      assert(
        res.body.error === "invalid_grant" || res.body.error === "invalid_request",
        `${why}: ${JSON.stringify(res.body)}`,
      );
      assert(res.body.access_token === undefined, why);
      // One guess: a verifier checked against the code spends it, so guessing is useless (a
      // request refused as malformed, invalid_request, never reached the code).
      if (res.body.error === "invalid_grant") {
        const retry = await exchange(server, { code, clientId, verifier });
        assertEquals([retry.status, retry.body.error], [400, "invalid_grant"], why);
      }
    }
    assertEquals(await deviceIds(server, userId), devicesBefore, "a failed exchange made a device");
    // The right verifier on a fresh code works.
    const code = await obtainCode(server, browser, clientId, challenge);
    const ok = await exchange(server, { code, clientId, verifier });
    assertEquals(ok.status, 200, JSON.stringify(ok.body));
    assertEquals(await whoamiStatus(server, ok.body.access_token), 200);
  });
});

Deno.test("code replay: the second exchange is refused and ends the session the first one made", async () => {
  await withServer(async (server) => {
    const clientId = await registerClient(server);
    const browser = await signedInBrowser(server, "alice");
    const { verifier, challenge } = await pkcePair();
    const code = await obtainCode(server, browser, clientId, challenge);
    const first = await exchange(server, { code, clientId, verifier });
    assertEquals(first.status, 200, JSON.stringify(first.body));
    assertEquals(await whoamiStatus(server, first.body.access_token), 200);
    const replay = await exchange(server, { code, clientId, verifier });
    assertEquals([replay.status, replay.body.error], [400, "invalid_grant"]);
    assert(replay.body.access_token === undefined);
    // RFC 6749 §4.1.2: the tokens the code gave are revoked.
    assertEquals(await whoamiStatus(server, first.body.access_token), 401);
    const again = await refresh(server, clientId, first.body.refresh_token);
    assertEquals([again.status, again.body.error], [400, "invalid_grant"]);
  });
});

Deno.test("refresh token reuse ends the whole grant, the rotated tokens included", async () => {
  await withServer(async (server) => {
    const clientId = await registerClient(server);
    const browser = await signedInBrowser(server, "alice");
    const userId = "@alice:" + server.inner.config.serverName;
    const { verifier, challenge } = await pkcePair();
    const code = await obtainCode(server, browser, clientId, challenge);
    const granted = await exchange(server, { code, clientId, verifier });
    assertEquals(granted.status, 200, JSON.stringify(granted.body));
    const deviceId = (await server.request("GET", "/_matrix/client/v3/account/whoami", {
      token: granted.body.access_token,
    })).body.device_id;
    const rotated = await refresh(server, clientId, granted.body.refresh_token);
    assertEquals(rotated.status, 200, JSON.stringify(rotated.body));
    assert(rotated.body.refresh_token !== granted.body.refresh_token);
    assertEquals(await whoamiStatus(server, rotated.body.access_token), 200);
    // Another client presenting the token is refused and changes nothing.
    const otherClient = await registerClient(server);
    const foreign = await refresh(server, otherClient, rotated.body.refresh_token);
    assertEquals(foreign.status, 400, JSON.stringify(foreign.body));
    assertEquals(await whoamiStatus(server, rotated.body.access_token), 200);
    // The spent token again: a thief and the client hold the same grant, so it all ends.
    const reuse = await refresh(server, clientId, granted.body.refresh_token);
    assertEquals([reuse.status, reuse.body.error], [400, "invalid_grant"]);
    assertEquals(await whoamiStatus(server, rotated.body.access_token), 401);
    const afterReuse = await refresh(server, clientId, rotated.body.refresh_token);
    assertEquals([afterReuse.status, afterReuse.body.error], [400, "invalid_grant"]);
    assert(!(await deviceIds(server, userId)).includes(deviceId), "the session's device is left");
  });
});

Deno.test("authorization code injection: another client's code, or the code on another redirect URI, gets nothing", async () => {
  await withServer(async (server) => {
    const victim = await registerClient(server);
    const attacker = await registerClient(server, {
      client_uri: "https://attacker.example",
      redirect_uris: ["https://attacker.example/callback"],
    });
    const browser = await signedInBrowser(server, "alice");
    const userId = "@alice:" + server.inner.config.serverName;
    const devicesBefore = await deviceIds(server, userId);
    const { verifier, challenge } = await pkcePair();
    // The attacker holds the victim's code (and even its verifier) but redeems it as itself.
    const code = await obtainCode(server, browser, victim, challenge);
    for (const redirectUri of [WEB_REDIRECT, "https://attacker.example/callback"]) {
      const res = await exchange(server, { code, clientId: attacker, verifier, redirectUri });
      assertEquals(res.status, 400, JSON.stringify(res.body));
      assert(res.body.access_token === undefined);
    }
    // The victim's client on a redirect URI other than the request's.
    const code2 = await obtainCode(server, browser, victim, challenge);
    const moved = await exchange(server, {
      code: code2,
      clientId: victim,
      verifier,
      redirectUri: "https://app.example.com/callback",
    });
    assertEquals([moved.status, moved.body.error], [400, "invalid_grant"]);
    // An unknown client and a made-up code.
    const unknown = await exchange(server, { code: code2, clientId: "nope", verifier });
    assertEquals(unknown.status === 400 || unknown.status === 401, true);
    const madeUp = await exchange(server, { code: "A".repeat(43), clientId: victim, verifier });
    assertEquals([madeUp.status, madeUp.body.error], [400, "invalid_grant"]);
    assertEquals(await deviceIds(server, userId), devicesBefore);
  });
});

Deno.test("CSRF on the consent page: no token, a wrong one, another session's or a foreign Origin issues no code", async () => {
  await withServer(async (server) => {
    const clientId = await registerClient(server);
    const alice = await signedInBrowser(server, "alice");
    const mallory = await signedInBrowser(server, "mallory");
    const { challenge } = await pkcePair();
    const url = authorizationUrl(server, {
      client_id: clientId,
      redirect_uri: WEB_REDIRECT,
      code_challenge: challenge,
    });
    const page = await consentPage(alice, url);
    const form = formTo(page, OAUTH_PAGES.consent);
    const allow = form.buttons.find((b) =>
      b.label.toLowerCase() === "allow" || b.value === "allow"
    );
    assert(allow, "no Allow button");
    const allowField = allow.name ? { [allow.name]: allow.value } : {};
    const malloryCsrf = formTo(await consentPage(mallory, url), OAUTH_PAGES.consent).fields.csrf;
    const { csrf: _csrf, ...withoutCsrf } = form.fields;
    const attempts: [string, () => Promise<BrowserResponse>][] = [
      ["no CSRF token", () => alice.post(form.action, { ...withoutCsrf, ...allowField })],
      [
        "a wrong CSRF token",
        () => alice.post(form.action, { ...form.fields, ...allowField, csrf: "x".repeat(43) }),
      ],
      [
        "another session's CSRF token",
        () => alice.post(form.action, { ...form.fields, ...allowField, csrf: malloryCsrf }),
      ],
      ["a foreign Origin", () =>
        alice.post(form.action, { ...form.fields, ...allowField }, {
          origin: "https://evil.example",
        })],
      [
        "a cross-site fetch without Origin",
        () =>
          alice.post(form.action, { ...form.fields, ...allowField }, {
            origin: "null",
            "sec-fetch-site": "cross-site",
          }),
      ],
      ["without the browser session cookie", () =>
        fetch(form.action, {
          method: "POST",
          redirect: "manual",
          headers: {
            "content-type": "application/x-www-form-urlencoded",
            origin: server.baseUrl,
          },
          body: new URLSearchParams({ ...form.fields, ...allowField }),
        }).then(async (res) => ({
          status: res.status,
          headers: res.headers,
          text: await res.text(),
          url: form.action,
          ...(res.headers.get("location") ? { location: res.headers.get("location")! } : {}),
        }))],
    ];
    for (const [why, attempt] of attempts) {
      const res = await attempt();
      const code = res.location ? redirectParams(new URL(res.location, server.baseUrl).href) : null;
      assert(!code?.get("code"), `${why}: a code was issued (${res.location})`);
      assert(
        res.status === 403 || res.status === 400 ||
          (res.location !== undefined &&
            new URL(res.location, server.baseUrl).pathname === OAUTH_PAGES.login),
        `${why}: ${res.status} ${res.location ?? ""}`,
      );
    }
    // The genuine submission still works afterwards.
    const back = await alice.submit(form, {}, "allow");
    assert(redirectParams(back.location!).get("code"), `genuine consent: ${back.location}`);
  });
});

Deno.test("sign-in form CSRF: a login post from another origin or without the token signs nobody in", async () => {
  await withServer(async (server) => {
    await registerUser(server.inner, "alice", PASSWORD);
    const browser = new Browser(fetch, { origin: server.baseUrl });
    const page = await browser.get(OAUTH_PAGES.login);
    const form = formTo(page, OAUTH_PAGES.login);
    const fields: Record<string, string> = {
      ...form.fields,
      username: "alice",
      password: PASSWORD,
    };
    const { csrf: _csrf, ...withoutCsrf } = fields;
    for (
      const [why, res] of [
        [
          "foreign Origin",
          await browser.post(form.action, fields, { origin: "https://evil.example" }),
        ],
        ["no CSRF token", await browser.post(form.action, withoutCsrf)],
      ] as const
    ) {
      assert(res.status === 403 || res.status === 400, `${why}: ${res.status}`);
      const account = await browser.get(OAUTH_PAGES.account);
      assert(
        account.status === 302 || account.status === 303,
        `${why}: the account page opened without sign-in (${account.status})`,
      );
    }
  });
});

Deno.test("open redirects: an unknown client or an unregistered redirect URI gets an error page, never a redirect", async () => {
  await withServer(async (server) => {
    const web = await registerClient(server);
    const nativeClient = await registerClient(server, {
      application_type: "native",
      redirect_uris: [NATIVE_REDIRECT],
    });
    const browser = await signedInBrowser(server, "alice");
    const { challenge } = await pkcePair();
    const refused: [string, string, string][] = [
      ["unknown client", "no-such-client", "https://evil.example/callback"],
      ["another host", web, "https://evil.example/callback"],
      ["a path below the registered one", web, "https://example.com/callback/../evil"],
      ["a longer path", web, "https://example.com/callbackx"],
      ["an added query", web, "https://example.com/callback?next=https://evil.example"],
      ["a different case", web, "https://example.com/Callback"],
      ["an explicit default port", web, "https://example.com:443/callback"],
      ["a port on a web URI", web, "https://example.com:8443/callback"],
      ["a fragment", web, "https://example.com/callback#x"],
      ["userinfo", web, "https://example.com@evil.example/callback"],
      ["loopback, another host", nativeClient, "http://localhost:5000/callback"],
      ["loopback, another path", nativeClient, "http://127.0.0.1:5000/other"],
      ["loopback over https", nativeClient, "https://127.0.0.1:5000/callback"],
    ];
    for (const [why, clientId, redirectUri] of refused) {
      const before = await kvSnapshot(server.inner.kv);
      // Even with other parameters wrong too, the redirect URI is checked first.
      for (const extra of [{}, { response_type: "token" }, { code_challenge_method: "plain" }]) {
        const res = await browser.get(authorizationUrl(server, {
          client_id: clientId,
          redirect_uri: redirectUri,
          code_challenge: challenge,
          ...extra,
        }));
        assert(res.location === undefined, `${why}: redirected to ${res.location}`);
        assert(res.status >= 400 && res.status < 500, `${why}: ${res.status}`);
        assert(
          (res.headers.get("content-type") ?? "").startsWith("text/html"),
          `${why}: not an HTML page`,
        );
      }
      assertEquals(await kvSnapshot(server.inner.kv), before, `${why}: refused but wrote`);
    }
    // The loopback rule: any port on the registered loopback URI goes on to consent.
    for (const port of ["5000", "65535"]) {
      await consentPage(
        browser,
        authorizationUrl(server, {
          client_id: nativeClient,
          redirect_uri: `http://127.0.0.1:${port}/callback`,
          code_challenge: challenge,
        }),
      );
    }
  });
});

Deno.test("open redirects: next= after sign-in stays on this server", async () => {
  await withServer(async (server) => {
    await registerUser(server.inner, "alice", PASSWORD);
    const hostile = [
      "https://evil.example/",
      "//evil.example/",
      "///evil.example/",
      "/\\\\evil.example/",
      "\\\\\\\\evil.example/",
      "/%2F%2Fevil.example/",
      "javascript:alert(1)",
      "http:evil.example",
      " //evil.example/",
      "/\t/evil.example/",
    ];
    for (const next of hostile) {
      const browser = new Browser(fetch, { origin: server.baseUrl });
      // Either the sign-in goes through and lands here, or the page refuses the parameter.
      const res = await passwordSignIn(browser, "alice", PASSWORD, next);
      if (res.location === undefined) {
        assertEquals(res.status, 400, `next=${JSON.stringify(next)}: ${res.status}`);
        continue;
      }
      const target = new URL(res.location);
      assertEquals(
        target.origin,
        server.baseUrl,
        `next=${JSON.stringify(next)} -> ${res.location}`,
      );
    }
  });
});
