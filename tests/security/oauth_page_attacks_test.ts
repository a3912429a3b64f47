/**
 * Attacks on the OAuth 2.0 sign-in and consent pages over real HTTP: CSRF on the consent and
 * sign-in forms, open redirects (unregistered redirect URIs, `next=`), silent authorization
 * through prompt=none, consent replay, markup injection through client metadata and request
 * parameters, framing, and browser session fixation.
 */
import { assert, assertEquals } from "../assert.ts";
import { OAUTH_PAGES } from "../../domain/oauth/oauth_paths.ts";
import { registerUser } from "../routes/client_harness.ts";
import {
  Browser,
  type BrowserResponse,
  formTo,
  passwordSignIn,
  redirectParams,
} from "../routes/oauth/browser_flow.ts";
import {
  authorizationUrl,
  consentPage,
  kvSnapshot,
  NATIVE_REDIRECT,
  PASSWORD,
  pkcePair,
  registerClient,
  signedInBrowser,
  WEB_REDIRECT,
  withServer,
} from "./oauth_attack_support.ts";

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

Deno.test("prompt=none never authorizes silently: consent_required when signed in, login_required when not", async () => {
  await withServer(async (server) => {
    const clientId = await registerClient(server);
    const { challenge } = await pkcePair();
    const url = authorizationUrl(server, {
      client_id: clientId,
      redirect_uri: WEB_REDIRECT,
      code_challenge: challenge,
      prompt: "none",
    });
    const anonymous = new Browser(fetch, { origin: server.baseUrl });
    const signedIn = await signedInBrowser(server, "alice");
    // Consent given once before does not make a later silent request pass either.
    const consent = await consentPage(signedIn, url.replace("prompt=none", "prompt=consent"));
    await signedIn.submit(formTo(consent, OAUTH_PAGES.consent), {}, "allow");
    for (
      const [browser, expected] of [
        [anonymous, "login_required"],
        [signedIn, "consent_required"],
      ] as const
    ) {
      const res = await browser.follow(await browser.get(url));
      assert(res.location?.startsWith(WEB_REDIRECT), `${expected}: ${res.status} ${res.url}`);
      const params = redirectParams(res.location!);
      assertEquals(params.get("error"), expected);
      assertEquals(params.get("code"), null);
      assertEquals(params.get("state"), "the-state");
    }
  });
});

Deno.test("consent is answered once: a replayed Allow, or Allow after Deny, issues no code", async () => {
  await withServer(async (server) => {
    const clientId = await registerClient(server);
    const browser = await signedInBrowser(server, "alice");
    const { challenge } = await pkcePair();
    const url = authorizationUrl(server, {
      client_id: clientId,
      redirect_uri: WEB_REDIRECT,
      code_challenge: challenge,
    });
    const form = formTo(await consentPage(browser, url), OAUTH_PAGES.consent);
    const first = await browser.submit(form, {}, "allow");
    assert(redirectParams(first.location!).get("code"), `first Allow: ${first.location}`);
    const replay = await browser.submit(form, {}, "allow");
    assert(
      replay.location === undefined || !redirectParams(replay.location).get("code"),
      `replayed Allow: ${replay.location}`,
    );
    assert(replay.status >= 400, `replayed Allow: ${replay.status}`);

    const form2 = formTo(await consentPage(browser, url), OAUTH_PAGES.consent);
    const denied = await browser.submit(form2, {}, "deny");
    const deniedParams = redirectParams(denied.location!);
    assertEquals(deniedParams.get("error"), "access_denied");
    assertEquals(deniedParams.get("state"), "the-state");
    const afterDeny = await browser.submit(form2, {}, "allow");
    assert(
      afterDeny.location === undefined || !redirectParams(afterDeny.location).get("code"),
      `Allow after Deny: ${afterDeny.location}`,
    );
  });
});

/** Markup that must never come back unescaped. */
const INJECTED = `"><script>alert(1)</script><img src=x onerror=alert(2)>`;

function assertNoInjectedMarkup(page: BrowserResponse, what: string): void {
  assert(!/<script/i.test(page.text), `${what}: a <script> element in ${page.url}`);
  assert(!/<img[^>]*onerror/i.test(page.text), `${what}: an injected <img> in ${page.url}`);
}

Deno.test("markup in client metadata and request parameters is escaped on every page", async () => {
  await withServer(async (server) => {
    const clientId = await registerClient(server, { client_name: `Evil ${INJECTED}` });
    const browser = await signedInBrowser(server, "alice");
    const { challenge } = await pkcePair();
    const consent = await consentPage(
      browser,
      authorizationUrl(server, {
        client_id: clientId,
        redirect_uri: WEB_REDIRECT,
        code_challenge: challenge,
        state: INJECTED,
        nonce: INJECTED,
      }),
    );
    assertNoInjectedMarkup(consent, "client_name on the consent page");
    assert(consent.text.includes("&lt;script&gt;"), "the client name is shown, escaped");
    // Error pages that name what was wrong.
    for (
      const params of [
        { client_id: INJECTED, redirect_uri: WEB_REDIRECT },
        { client_id: clientId, redirect_uri: `https://evil.example/${INJECTED}` },
        { client_id: clientId, redirect_uri: `javascript:alert(1)//${INJECTED}` },
      ]
    ) {
      const page = await browser.get(
        authorizationUrl(server, { ...params, code_challenge: challenge }),
      );
      assertEquals(page.location, undefined);
      assertNoInjectedMarkup(page, `error page for ${JSON.stringify(params)}`);
    }
    const login = await browser.get(`${OAUTH_PAGES.login}?next=${encodeURIComponent(INJECTED)}`);
    assertNoInjectedMarkup(login, "next= on the login page");
    const link = await browser.get(`${OAUTH_PAGES.link}?code=${encodeURIComponent(INJECTED)}`);
    assertNoInjectedMarkup(link, "code= on the link page");
  });
});

Deno.test("the pages cannot be framed or cached, and run no script", async () => {
  await withServer(async (server) => {
    const clientId = await registerClient(server);
    const browser = await signedInBrowser(server, "alice");
    const { challenge } = await pkcePair();
    const consent = await consentPage(
      browser,
      authorizationUrl(server, {
        client_id: clientId,
        redirect_uri: WEB_REDIRECT,
        code_challenge: challenge,
      }),
    );
    const anonymous = new Browser(fetch, { origin: server.baseUrl });
    const pages = [
      consent,
      await anonymous.get(OAUTH_PAGES.login),
      await browser.get(OAUTH_PAGES.link),
      await browser.get(OAUTH_PAGES.account),
    ];
    for (const page of pages) {
      assertEquals(page.status, 200, page.url);
      const frameOptions = page.headers.get("x-frame-options")?.toUpperCase();
      const csp = page.headers.get("content-security-policy") ?? "";
      assert(
        frameOptions === "DENY" || /frame-ancestors\s+'none'/.test(csp),
        `${page.url} can be framed`,
      );
      assert(/no-store/.test(page.headers.get("cache-control") ?? ""), `${page.url} is cacheable`);
      assert(!/<script/i.test(page.text), `${page.url} has a script`);
    }
  });
});

Deno.test("session fixation: signing in with a planted session cookie starts a new session", async () => {
  await withServer(async (server) => {
    const mallory = await signedInBrowser(server, "mallory");
    const planted = mallory.cookies.get("tessera_session");
    assert(planted, "no session cookie after sign-in");
    await registerUser(server.inner, "alice", PASSWORD);
    const alice = new Browser(fetch, { origin: server.baseUrl });
    alice.cookies.set("tessera_session", planted);
    const res = await passwordSignIn(alice, "alice", PASSWORD, OAUTH_PAGES.account);
    assert(res.status === 302 || res.status === 303, `sign-in: ${res.status}`);
    const fresh = alice.cookies.get("tessera_session");
    assert(fresh && fresh !== planted, "the planted session cookie was kept");
    // Mallory's cookie is still Mallory's session, never Alice's.
    const account = await mallory.open(OAUTH_PAGES.account);
    assert(!account.text.includes("@alice:"), "the planted cookie now signs in as alice");
  });
});
