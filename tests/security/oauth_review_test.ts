/**
 * Findings of the adversarial review of the OAuth 2.0 server, sign-in pages and upstream
 * sign-in (issue 14), each a regression test of a hole that existed: kept here so the
 * reasoning of each attack stays next to its check.
 */
import { assert, assertEquals } from "../assert.ts";
import { localPath } from "../../routes/oauth/browser_session.ts";
import { registerUser } from "../routes/client_harness.ts";
import { Browser, csrfToken, passwordSignIn } from "../routes/oauth/browser_flow.ts";
import { OAUTH_PAGES } from "../../domain/oauth/oauth_paths.ts";
import {
  exchange,
  obtainCode,
  PASSWORD,
  pkcePair as attackPkcePair,
  refresh,
  registerClient as registerAttackClient,
  signedInBrowser,
  whoamiStatus,
  withServer,
} from "./oauth_attack_support.ts";
import { startTestServer } from "../routes/test_server.ts";
import { authorizePath, pkcePair, registerClient } from "../routes/oauth/oauth_client_fixture.ts";

/**
 * Dot segments: `/.//evil.example` is a local-looking path, but the URL parser removes the `.`
 * and leaves `//evil.example`, which a browser reads as another host (protocol-relative).
 */
const DOT_SEGMENT_ESCAPES = [
  "/.//evil.example/",
  "/a/..//evil.example/",
  "/%2e//evil.example/",
  "/%2E%2E//evil.example/",
  "/./..//evil.example/",
];

Deno.test("localPath: dot segments cannot turn a local path into //host", () => {
  for (const next of DOT_SEGMENT_ESCAPES) {
    const path = localPath(next);
    assert(path === undefined || !path.startsWith("//"), `${next} -> ${path}`);
  }
});

Deno.test("open redirect: next= with dot segments after sign-in stays on this server", async () => {
  await withServer(async (server) => {
    await registerUser(server.inner, "alice", PASSWORD);
    for (const next of DOT_SEGMENT_ESCAPES) {
      const browser = new Browser(fetch, { origin: server.baseUrl });
      const res = await passwordSignIn(browser, "alice", PASSWORD, next);
      if (res.location === undefined) continue;
      assertEquals(new URL(res.location, server.baseUrl).origin, server.baseUrl, `${next}`);
      assert(!res.location.startsWith("//"), `${next} -> Location ${res.location}`);
    }
  });
});

Deno.test("open redirect: the logout form (cross-site, signed out) never sends the browser to //host", async () => {
  await withServer(async (server) => {
    for (const next of DOT_SEGMENT_ESCAPES) {
      const res = await fetch(`${server.baseUrl}${OAUTH_PAGES.logout}`, {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ next }),
      });
      await res.body?.cancel();
      const location = res.headers.get("location");
      assert(location === null || !location.startsWith("//"), `${next} -> ${location}`);
    }
  });
});

Deno.test("authorization endpoint: anonymous requests cannot park authorizations in KV without limit", async () => {
  // A clock that stands still: the per-address bucket does not refill during the test.
  const frozen = Date.now();
  const server = await startTestServer({}, { now: () => frozen });
  try {
    const clientId = await registerClient(server);
    const { challenge } = pkcePair();
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) {
      const res = await server.app.request(
        authorizePath(clientId, challenge, { state: `flood-${i}` }),
        {},
        { remoteAddr: { hostname: "198.51.100.77" } },
      );
      await res.body?.cancel();
      statuses.push(res.status);
    }
    assert(statuses.includes(429), `every request parked: ${statuses.join(",")}`);
    let parked = 0;
    for await (const _ of server.kv.list({ prefix: ["oauthrequestid_pendingauthorization"] })) {
      parked++;
    }
    assert(parked < 40, `${parked} parked authorizations`);
    // Another address is not affected.
    const other = await server.app.request(authorizePath(clientId, challenge), {}, {
      remoteAddr: { hostname: "203.0.113.5" },
    });
    await other.body?.cancel();
    assertEquals(other.status, 303);
  } finally {
    server.close();
  }
});

/**
 * The m.login.sso fallback page confirms whatever UIA session its link names. Someone holding a
 * user's access token (but not their password) starts a deactivation and sends the user the
 * fallback link: the page must say what the user is confirming, not just "continue".
 */
Deno.test("m.login.sso fallback: the confirmation names what the app asked to do", async () => {
  await withServer(async (server) => {
    const { accessToken } = await registerUser(server.inner, "dora", PASSWORD);
    const first = await server.request("POST", "/_matrix/client/v3/account/deactivate", {
      token: accessToken,
      body: {},
    });
    assertEquals(first.status, 401);
    assert(
      first.body.flows.some((f: { stages: string[] }) => f.stages.includes("m.login.sso")),
      JSON.stringify(first.body.flows),
    );
    const browser = await signedInBrowser(server, "dora");
    const page = await browser.get(
      `/_matrix/client/v3/auth/m.login.sso/fallback/web?session=${first.body.session}`,
    );
    assertEquals(page.status, 200, page.text);
    assert(/deactivate your account/i.test(page.text), page.text);
  }, {
    TESSERA_OIDC_ISSUER: "https://idp.example",
    TESSERA_OIDC_CLIENT_ID: "tessera",
  });
});

/**
 * Legacy SSO's redirectUrl: the URL parser drops tabs and newlines, so `URL.canParse` accepts a
 * redirectUrl with CR/LF in it, which then cannot be put in a Location header (a 500), and
 * which the confirmation names differently from what the raw string says.
 */
Deno.test("legacy SSO: a redirectUrl with control characters is refused up front, never a 500", async () => {
  await withServer(async (server) => {
    const browser = await signedInBrowser(server, "erin");
    for (
      const redirectUrl of ["https://app.example/\r\nx", "https://app.example\n.evil.example/"]
    ) {
      const path = `/_matrix/client/v3/login/sso/redirect?${new URLSearchParams({ redirectUrl })}`;
      const page = await browser.get(path);
      assertEquals(page.status, 400, `${JSON.stringify(redirectUrl)}: ${page.status}`);
      // The form as a tampered page would post it (the CSRF token of a genuine one).
      const genuine = await browser.get(
        `/_matrix/client/v3/login/sso/redirect?redirectUrl=${
          encodeURIComponent("https://app.example/")
        }`,
      );
      const res = await browser.submit({
        method: "post",
        action: `${server.baseUrl}/_matrix/client/v3/login/sso/redirect`,
        fields: { csrf: csrfToken(genuine), redirectUrl },
        buttons: [],
      });
      assertEquals(res.status, 400, `POST ${JSON.stringify(redirectUrl)}: ${res.status}`);
    }
  });
});

/**
 * A password login naming an OAuth session's device ID takes that device over (as a login with
 * a known device ID does). It must stop being that OAuth session: a spent refresh token of the
 * old session presented again (reuse detection) must not end the new login.
 */
Deno.test("a password login that takes over an OAuth device is not ended by the old session's reuse", async () => {
  await withServer(async (server) => {
    const clientId = await registerAttackClient(server);
    const browser = await signedInBrowser(server, "fred");
    const { verifier, challenge } = await attackPkcePair();
    const code = await obtainCode(server, browser, clientId, challenge);
    const granted = await exchange(server, { code, clientId, verifier });
    assertEquals(granted.status, 200, JSON.stringify(granted.body));
    const deviceId = (granted.body.scope as string).split(" ")
      .find((s) => s.startsWith("urn:matrix:client:device:"))!
      .slice("urn:matrix:client:device:".length);
    const spent = granted.body.refresh_token as string;
    assertEquals((await refresh(server, clientId, spent)).status, 200);

    const login = await server.request("POST", "/_matrix/client/v3/login", {
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: "fred" },
        password: PASSWORD,
        device_id: deviceId,
      },
    });
    assertEquals(login.status, 200, JSON.stringify(login.body));
    assertEquals(login.body.device_id, deviceId);

    // The old session's spent token again: refused, and the password login lives on.
    assertEquals((await refresh(server, clientId, spent)).status, 400);
    assertEquals(await whoamiStatus(server, login.body.access_token), 200);
    // Nor can the OAuth client revoke the password login's token as if it were its own.
    const revoked = await fetch(`${server.baseUrl}/oauth2/revoke`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: login.body.access_token, client_id: clientId }),
    });
    await revoked.body?.cancel();
    assertEquals(await whoamiStatus(server, login.body.access_token), 200);
  });
});
