/**
 * Attacks on the OAuth 2.0 grants over real HTTP: PKCE downgrades at the authorization and
 * token endpoints, authorization code replay and injection, refresh token reuse, tokens used
 * where another kind belongs, and revocation by another client. The pages have their own suite
 * (oauth_page_attacks_test.ts), and redirect URI registration its table
 * (oauth_registration_attacks_test.ts).
 */
import { assert, assertEquals } from "../assert.ts";
import { OAUTH_ENDPOINTS, OAUTH_PAGES } from "../../domain/oauth/oauth_paths.ts";
import { formTo, redirectParams } from "../routes/oauth/browser_flow.ts";
import {
  authorizationUrl,
  deviceIds,
  exchange,
  NATIVE_REDIRECT,
  obtainCode,
  pkcePair,
  postForm,
  refresh,
  registerClient,
  signedInBrowser,
  WEB_REDIRECT,
  whoamiStatus,
  withServer,
} from "./oauth_attack_support.ts";

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

Deno.test("tokens where another kind belongs: a refresh token as a bearer, an access token as a refresh token, an OAuth refresh token at /refresh", async () => {
  await withServer(async (server) => {
    const clientId = await registerClient(server);
    const browser = await signedInBrowser(server, "alice");
    const { verifier, challenge } = await pkcePair();
    const code = await obtainCode(server, browser, clientId, challenge);
    const granted = await exchange(server, { code, clientId, verifier });
    assertEquals(granted.status, 200, JSON.stringify(granted.body));
    const { access_token: access, refresh_token: refreshToken } = granted.body;
    assertEquals(await whoamiStatus(server, refreshToken), 401);
    const asRefresh = await refresh(server, clientId, access);
    assertEquals([asRefresh.status, asRefresh.body.error], [400, "invalid_grant"]);
    // The legacy endpoint would rotate without keeping the spent token (no reuse detection).
    const legacy = await server.request("POST", "/_matrix/client/v3/refresh", {
      body: { refresh_token: refreshToken },
    });
    assert(legacy.status === 401 || legacy.status === 400, `/refresh: ${legacy.status}`);
    assert(legacy.body.access_token === undefined);
    // None of that disturbed the session: the refresh token still rotates once.
    const rotated = await refresh(server, clientId, refreshToken);
    assertEquals(rotated.status, 200, JSON.stringify(rotated.body));
    assertEquals(await whoamiStatus(server, rotated.body.access_token), 200);
  });
});

Deno.test("revocation by another client revokes nothing", async () => {
  await withServer(async (server) => {
    const victim = await registerClient(server);
    const attacker = await registerClient(server, {
      client_uri: "https://attacker.example",
      redirect_uris: ["https://attacker.example/callback"],
    });
    const browser = await signedInBrowser(server, "alice");
    const { verifier, challenge } = await pkcePair();
    const code = await obtainCode(server, browser, victim, challenge);
    const granted = await exchange(server, { code, clientId: victim, verifier });
    assertEquals(granted.status, 200, JSON.stringify(granted.body));
    for (const token of [granted.body.access_token, granted.body.refresh_token]) {
      const res = await postForm(server.baseUrl, OAUTH_ENDPOINTS.revocation, {
        token,
        client_id: attacker,
      });
      assert(res.status === 400 || res.status === 401 || res.status === 403, `${res.status}`);
    }
    assertEquals(await whoamiStatus(server, granted.body.access_token), 200);
    const rotated = await refresh(server, victim, granted.body.refresh_token);
    assertEquals(rotated.status, 200, JSON.stringify(rotated.body));
  });
});

Deno.test("a code issued for one loopback port is refused on another", async () => {
  await withServer(async (server) => {
    const clientId = await registerClient(server, {
      application_type: "native",
      redirect_uris: [NATIVE_REDIRECT],
    });
    const browser = await signedInBrowser(server, "alice");
    const { verifier, challenge } = await pkcePair();
    const issuedFor = "http://127.0.0.1:5000/callback";
    const code = await obtainCode(server, browser, clientId, challenge, issuedFor);
    const elsewhere = await exchange(server, {
      code,
      clientId,
      verifier,
      redirectUri: "http://127.0.0.1:6000/callback",
    });
    assertEquals([elsewhere.status, elsewhere.body.error], [400, "invalid_grant"]);
    const code2 = await obtainCode(server, browser, clientId, challenge, issuedFor);
    const registered = await exchange(server, {
      code: code2,
      clientId,
      verifier,
      redirectUri: NATIVE_REDIRECT,
    });
    assertEquals([registered.status, registered.body.error], [400, "invalid_grant"]);
    const code3 = await obtainCode(server, browser, clientId, challenge, issuedFor);
    const right = await exchange(server, {
      code: code3,
      clientId,
      verifier,
      redirectUri: issuedFor,
    });
    assertEquals(right.status, 200, JSON.stringify(right.body));
  });
});

Deno.test("device grant: another client cannot poll a device code, before or after approval; a device code is single use", async () => {
  await withServer(async (server) => {
    const grantTypes = ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"];
    // Device-only clients: no redirect URIs, no response types.
    const deviceOnly = {
      grant_types: grantTypes,
      redirect_uris: undefined,
      response_types: undefined,
    };
    const tv = await registerClient(server, deviceOnly);
    const attacker = await registerClient(server, {
      ...deviceOnly,
      client_uri: "https://attacker.example",
    });
    const started = await postForm(server.baseUrl, OAUTH_ENDPOINTS.deviceAuthorization, {
      client_id: tv,
      scope: "urn:matrix:client:api:*",
    });
    assertEquals(started.status, 200, JSON.stringify(started.body));
    const poll = (clientId: string) =>
      postForm(server.baseUrl, OAUTH_ENDPOINTS.token, {
        grant_type: "urn:ietf:params:oauth:grant-type:device_code",
        device_code: started.body.device_code,
        client_id: clientId,
      });
    const stolen = await poll(attacker);
    assertEquals(stolen.status, 400, JSON.stringify(stolen.body));
    assert(stolen.body.access_token === undefined);
    // Approve it on the link page, then the attacker polls again: still nothing.
    const browser = await signedInBrowser(server, "alice");
    const page = await browser.open(started.body.verification_uri_complete);
    const form = page.text.includes("Attack test client") ? formTo(page, OAUTH_PAGES.link) : formTo(
      await browser.follow(await browser.submit(formTo(page, OAUTH_PAGES.link))),
      OAUTH_PAGES.link,
    );
    await browser.follow(await browser.submit(form, {}, "allow"));
    const stolenAfter = await poll(attacker);
    assertEquals(stolenAfter.status, 400, JSON.stringify(stolenAfter.body));
    assert(stolenAfter.body.access_token === undefined);
    const mine = await poll(tv);
    assertEquals(mine.status, 200, JSON.stringify(mine.body));
    const again = await poll(tv);
    assertEquals(again.status, 400, "a device code is single use");
  });
});

Deno.test("a refresh cannot widen the grant: a scope asking for another device or openid is not granted", async () => {
  await withServer(async (server) => {
    const clientId = await registerClient(server);
    const browser = await signedInBrowser(server, "alice");
    const { verifier, challenge } = await pkcePair();
    const code = await obtainCode(server, browser, clientId, challenge);
    const granted = await exchange(server, { code, clientId, verifier });
    assertEquals(granted.status, 200, JSON.stringify(granted.body));
    const deviceScope = granted.body.scope.split(" ").find((s: string) =>
      s.startsWith("urn:matrix:client:device:")
    );
    assert(deviceScope, `no device in ${granted.body.scope}`);
    const wider = await postForm(server.baseUrl, OAUTH_ENDPOINTS.token, {
      grant_type: "refresh_token",
      refresh_token: granted.body.refresh_token,
      client_id: clientId,
      scope: "urn:matrix:client:api:* urn:matrix:client:device:STOLEN openid",
    });
    if (wider.status === 200) {
      // Ignored (RFC 6749 §6 allows only a narrower scope): the grant is what it was.
      assertEquals(wider.body.scope.split(" ").sort(), granted.body.scope.split(" ").sort());
      assertEquals(wider.body.id_token, undefined);
      const whoami = await server.request("GET", "/_matrix/client/v3/account/whoami", {
        token: wider.body.access_token,
      });
      assertEquals(`urn:matrix:client:device:${whoami.body.device_id}`, deviceScope);
    } else {
      assertEquals([wider.status, wider.body.error], [400, "invalid_scope"]);
    }
  });
});
