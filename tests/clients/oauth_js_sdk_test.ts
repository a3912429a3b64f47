/**
 * matrix-js-sdk's own OAuth 2.0 helpers (the `OAuth2` class and `TokenRefresher` Element Web
 * uses) against the real server process: discovery through `getAuthMetadata`, dynamic client
 * registration, the authorization URL, the sign-in and consent pages submitted with real form
 * posts and a cookie jar, the code exchange, a `/sync` through the SDK's own loop, a refresh
 * (by TokenRefresher, then by a MatrixClient on its own when its token is unknown), and
 * revocation through the SDK's logout, after which both tokens are refused. Then the device
 * authorization grant: the SDK polls while the user approves (or denies) the code on the link
 * page.
 */
import * as sdk from "matrix-js-sdk";
import { TokenRefresher } from "matrix-js-sdk/lib/oauth/tokenRefresher.js";
import { assert, assertEquals } from "../assert.ts";
import { type ServerProcess, startServerProcess } from "./server_process.ts";
import { recordingFetch, registerUser, startSyncing, step } from "./matrix_helpers.ts";
import { quietLogger } from "./crypto_client.ts";
import {
  Browser,
  forms,
  formTo,
  passwordSignIn,
  redirectParams,
} from "../routes/oauth/browser_flow.ts";
import { OAUTH_PAGES } from "../../domain/oauth/oauth_paths.ts";

const PASSWORD = "correct horse battery staple";

/** Keep the SDK's warnings and errors only. */
const sdkLogger = quietLogger();

/** The client as a native app would register it: loopback redirect, no port registered. */
const CLIENT_METADATA = {
  client_name: "js-sdk OAuth test",
  client_uri: "https://client.example",
  application_type: "native" as const,
  redirect_uris: ["http://127.0.0.1/callback"] as [string],
};
/** Where the app listens this time: loopback, any port (the spec's native loopback rule). */
const REDIRECT_URI = "http://127.0.0.1:41234/callback";

/** Run `body` on a fresh server with a user `alice` (password PASSWORD). */
async function withServer(
  body: (server: ServerProcess, userId: string, failures: string[]) => Promise<void>,
): Promise<void> {
  const server = await startServerProcess();
  const failures: string[] = [];
  let failed = true;
  try {
    const userId = await registerUser(server.baseUrl, "alice", PASSWORD);
    await body(server, userId, failures);
    failed = false;
  } finally {
    if (failed) {
      console.error("requests answered with an error status:\n  " + failures.join("\n  "));
      console.error("server output:\n" + server.output());
    }
    await server.stop();
  }
}

/** Discovery and registration, as Element Web does them: the validated metadata and client ID. */
async function discoverAndRegister(server: ServerProcess, failures: string[]) {
  const anonymous = sdk.createClient({
    baseUrl: server.baseUrl,
    fetchFn: recordingFetch(failures),
    logger: sdkLogger,
  });
  const metadata = await step("getAuthMetadata", () => anonymous.getAuthMetadata());
  assertEquals(metadata.issuer, `${server.baseUrl}/`);
  for (const endpoint of ["authorization", "token", "registration", "revocation"] as const) {
    const url = metadata[`${endpoint}_endpoint`];
    assert(url.startsWith(`${server.baseUrl}/`), `${endpoint}_endpoint ${url}`);
  }
  assert(metadata.device_authorization_endpoint, "no device_authorization_endpoint");
  const clientId = await step(
    "OAuth2.registerClient",
    () => sdk.OAuth2.registerClient(metadata, CLIENT_METADATA, sdkLogger),
  );
  return { metadata, clientId };
}

/** A MatrixClient on an access token. */
function clientOn(
  server: ServerProcess,
  failures: string[],
  userId: string,
  deviceId: string,
  accessToken: string,
): sdk.MatrixClient {
  return sdk.createClient({
    baseUrl: server.baseUrl,
    userId,
    deviceId,
    accessToken,
    store: new sdk.MemoryStore(),
    fetchFn: recordingFetch(failures),
    logger: sdkLogger,
  });
}

/** The status and errcode a MatrixClient call failed with (or 200 when it did not fail). */
async function outcome(call: () => Promise<unknown>): Promise<[number, string | undefined]> {
  try {
    await call();
    return [200, undefined];
  } catch (error) {
    const e = error as sdk.MatrixError;
    return [e.httpStatus ?? 0, e.errcode];
  }
}

Deno.test({
  name:
    "js-sdk OAuth2: discovery, registration, sign-in and consent, code exchange, refresh, sync, revocation",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withServer(async (server, userId, failures) => {
      // 1-2. Discovery and dynamic registration.
      const { metadata, clientId } = await discoverAndRegister(server, failures);

      // 3. The authorization URL, for a device ID the app chose.
      const deviceId = "JSSDKOAUTH1";
      const oauth = new sdk.OAuth2(metadata, { clientId, deviceId }, sdkLogger);
      const state = crypto.randomUUID();
      const authorizationUrl = await oauth.generateAuthorizationCodeGrantUrl(state, REDIRECT_URI);
      assert(authorizationUrl.startsWith(metadata.authorization_endpoint));

      // 4. The browser: sent to sign in, the password form, then the consent page's Allow,
      // which redirects to the app's loopback URI with the code in the fragment.
      const browser = new Browser(fetch, { origin: server.baseUrl });
      const toLogin = await browser.open(authorizationUrl);
      assertEquals(toLogin.status, 200);
      assert(new URL(toLogin.url).pathname === OAUTH_PAGES.login, `landed on ${toLogin.url}`);
      const signedIn = await browser.submit(formTo(toLogin, OAUTH_PAGES.login), {
        username: "alice",
        password: PASSWORD,
      });
      const consent = await browser.follow(signedIn);
      assertEquals(consent.status, 200, consent.text);
      assert(consent.text.includes("js-sdk OAuth test"), "the consent page names the client");
      assert(consent.text.includes(deviceId), "the consent page names the device");
      const back = await browser.submit(formTo(consent, OAUTH_PAGES.consent), {}, "allow");
      assert(back.status === 302 || back.status === 303, `${back.status} ${back.text}`);
      assert(back.location?.startsWith(`${REDIRECT_URI}#`), `redirected to ${back.location}`);
      const params = redirectParams(back.location!);
      assertEquals(params.get("state"), state);
      assertEquals(params.get("iss"), metadata.issuer);
      const code = params.get("code");
      assert(code, "no code in the redirect");

      // 5. The code exchange.
      const tokens = await step(
        "completeAuthorizationCodeGrant",
        () => oauth.completeAuthorizationCodeGrant(code, REDIRECT_URI),
      );
      assertEquals(tokens.token_type, "Bearer");
      assert(tokens.refresh_token, "no refresh token");
      assert(tokens.expires_in && tokens.expires_in > 0, "no expiry");
      assert(
        tokens.scope?.split(" ").includes(`urn:matrix:client:device:${deviceId}`),
        `scope ${tokens.scope}`,
      );

      // 6. The SDK's own sync loop on the access token; the session is the device asked for.
      const first = clientOn(server, failures, userId, deviceId, tokens.access_token);
      const whoami = await step("whoami", () => first.whoami());
      assertEquals([whoami.user_id, whoami.device_id], [userId, deviceId]);
      await step("first sync", () => startSyncing(first, userId, 10));
      first.stopClient();

      // A refresh through the SDK's TokenRefresher: both tokens rotate.
      let saved: { accessToken: string; refreshToken?: string } | undefined;
      const refresher = new TokenRefresher(oauth, (t) => {
        saved = t;
      });
      const refreshed = await step(
        "TokenRefresher.refreshTokens",
        () => refresher.refreshTokens(tokens.refresh_token!),
      );
      assertEquals(saved?.accessToken, refreshed.accessToken);
      assert(refreshed.accessToken !== tokens.access_token, "the access token was not rotated");
      assert(refreshed.refreshToken, "no new refresh token");
      assert(refreshed.refreshToken !== tokens.refresh_token, "the refresh token was not rotated");
      // The client as Element runs it: the SDK holds the refresh token and the client ID, and
      // refreshes by itself when the server calls its access token unknown (the rotation above
      // replaced the one it starts with), through its own discovery and TokenRefresher.
      let current: sdk.AccessTokens | undefined;
      const managed = sdk.createClient({
        baseUrl: server.baseUrl,
        userId,
        deviceId,
        accessToken: tokens.access_token,
        refreshToken: refreshed.refreshToken,
        oauthClientId: clientId,
        onTokenRefresh: (t) => {
          current = t;
        },
        store: new sdk.MemoryStore(),
        fetchFn: recordingFetch(failures),
        logger: sdkLogger,
      });
      const managedWhoami = await step("whoami with a replaced token", () => managed.whoami());
      assertEquals(managedWhoami.device_id, deviceId);
      assert(current, "the SDK did not refresh its unknown access token");
      assert(current.accessToken !== refreshed.accessToken, "the SDK's refresh did not rotate");
      await step("sync after the SDK's refresh", () => startSyncing(managed, userId, 10));

      // Logging out an OAuth session in the SDK revokes both tokens (RFC 7009; the second
      // revocation names a token of a session already ended, which is still a 200). The
      // session is over: both tokens are refused and the device is gone.
      await step("logout (revocation)", () => managed.logout(true));
      const afterRevoke = clientOn(server, failures, userId, deviceId, current.accessToken);
      assertEquals(await outcome(() => afterRevoke.whoami()), [401, "M_UNKNOWN_TOKEN"]);
      assertEquals(
        await outcome(() =>
          afterRevoke.http.authedRequest(sdk.Method.Get, "/sync", { timeout: "0" })
        ),
        [401, "M_UNKNOWN_TOKEN"],
      );
      let refreshError: unknown;
      try {
        await refresher.refreshTokens(current.refreshToken!);
      } catch (error) {
        refreshError = error;
      }
      // A 4xx OAuth error: the SDK logs the user out (TokenRefreshLogoutError).
      assert(
        refreshError instanceof sdk.TokenRefreshLogoutError,
        `refresh after revocation: ${refreshError}`,
      );
      const password = await step("password login", async () => {
        const c = sdk.createClient({ baseUrl: server.baseUrl, logger: sdkLogger });
        return await c.loginRequest({
          type: "m.login.password",
          identifier: { type: "m.id.user", user: "alice" },
          password: PASSWORD,
        });
      });
      const viewer = clientOn(server, failures, userId, password.device_id, password.access_token);
      const devices = await step("getDevices", () => viewer.getDevices());
      assert(
        !devices.devices.some((d) => d.device_id === deviceId),
        "the revoked session's device is still listed",
      );
    }),
});

Deno.test({
  name:
    "js-sdk OAuth2: the device authorization grant approved on the link page (then signed out on the account page) and denied",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withServer(async (server, userId, failures) => {
      const { metadata, clientId } = await discoverAndRegister(server, failures);
      const browser = new Browser(fetch, { origin: server.baseUrl });
      const signIn = await passwordSignIn(browser, "alice", PASSWORD, OAUTH_PAGES.account);
      assert(signIn.status === 302 || signIn.status === 303, `sign-in: ${signIn.status}`);

      // Approved: the SDK polls (authorization_pending) until the user says yes on the page
      // the verification_uri_complete opens, then gets tokens for the device it asked for.
      const deviceId = "JSSDKTV1";
      const tv = new sdk.OAuth2(metadata, { clientId, deviceId }, sdkLogger);
      const grant = await step("startDeviceAuthorizationGrant", () =>
        tv.startDeviceAuthorizationGrant());
      assert(/^[A-Z]{4}-[A-Z]{4}$/.test(grant.user_code), `user code ${grant.user_code}`);
      assert(grant.verification_uri.startsWith(server.baseUrl), grant.verification_uri);
      const polled = tv.waitForDeviceAuthorizationGrant(grant);
      const page = await browser.open(grant.verification_uri_complete!);
      assertEquals(page.status, 200, page.text);
      // The link page may ask to confirm the code before showing the consent.
      const consent = page.text.includes("js-sdk OAuth test")
        ? page
        : await browser.follow(await browser.submit(formTo(page, OAUTH_PAGES.link)));
      assert(consent.text.includes("js-sdk OAuth test"), consent.text);
      const approved = await browser.follow(
        await browser.submit(formTo(consent, OAUTH_PAGES.link), {}, "allow"),
      );
      assert(approved.status < 400, `approval: ${approved.status} ${approved.text}`);
      const result = await polled;
      assert("access_token" in result, `device grant: ${JSON.stringify(result)}`);
      const tokens = result as sdk.DeviceAccessTokenResponse;
      const client = clientOn(server, failures, userId, deviceId, tokens.access_token);
      const whoami = await step("whoami (device grant)", () =>
        client.whoami());
      assertEquals([whoami.user_id, whoami.device_id], [userId, deviceId]);
      await step("sync (device grant)", () => startSyncing(client, userId, 10));
      client.stopClient();

      // The account page the metadata names (account_management_uri, MSC4191's actions): the
      // session shows the client's name, and signing it out there ends it for the SDK too.
      assert(
        metadata.account_management_actions_supported?.includes("org.matrix.device_delete"),
        "org.matrix.device_delete not offered",
      );
      const manage = new URL(metadata.account_management_uri!);
      manage.searchParams.set("action", "org.matrix.device_view");
      manage.searchParams.set("device_id", deviceId);
      const view = await browser.open(manage.toString());
      assertEquals(view.status, 200, view.text);
      assert(view.text.includes("js-sdk OAuth test"), "the session page names the client");
      manage.searchParams.set("action", "org.matrix.device_delete");
      const confirm = await browser.open(manage.toString());
      const signOut = forms(confirm).find((f) => f.fields.action === "org.matrix.device_delete");
      assert(signOut, `no sign-out form: ${confirm.text}`);
      const done = await browser.follow(await browser.submit(signOut));
      assert(done.status < 400, `sign-out: ${done.status} ${done.text}`);
      assertEquals(await outcome(() => client.whoami()), [401, "M_UNKNOWN_TOKEN"]);

      // Denied: the SDK's poll ends with access_denied and no tokens.
      const denied = new sdk.OAuth2(metadata, { clientId, deviceId: "JSSDKTV2" }, sdkLogger);
      const grant2 = await step("second startDeviceAuthorizationGrant", () =>
        denied.startDeviceAuthorizationGrant());
      const polled2 = denied.waitForDeviceAuthorizationGrant(grant2);
      const page2 = await browser.open(grant2.verification_uri_complete!);
      const consent2 = page2.text.includes("js-sdk OAuth test")
        ? page2
        : await browser.follow(await browser.submit(formTo(page2, OAUTH_PAGES.link)));
      await browser.follow(await browser.submit(formTo(consent2, OAUTH_PAGES.link), {}, "deny"));
      const result2 = await polled2;
      assertEquals((result2 as sdk.DeviceAccessTokenError).error, "access_denied");
    }),
});

Deno.test({
  name: "js-sdk OAuth2: prompt=create registers a new account on the register page, then consents",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withServer(async (server, _alice, failures) => {
      const { metadata, clientId } = await discoverAndRegister(server, failures);
      assert(metadata.prompt_values_supported?.includes("create"), "prompt=create not offered");
      const oauth = new sdk.OAuth2(metadata, { clientId, deviceId: "JSSDKNEW1" }, sdkLogger);
      const state = crypto.randomUUID();
      const url = await oauth.generateAuthorizationCodeGrantUrl(
        state,
        REDIRECT_URI,
        "query",
        "create",
      );
      const browser = new Browser(fetch, { origin: server.baseUrl });
      const register = await browser.open(url);
      assertEquals(new URL(register.url).pathname, OAUTH_PAGES.register, register.url);
      const consent = await browser.follow(
        await browser.submit(formTo(register, OAUTH_PAGES.register), {
          username: "newcomer",
          password: PASSWORD,
          password_again: PASSWORD,
        }),
      );
      assertEquals(consent.status, 200, consent.text);
      const back = await browser.submit(formTo(consent, OAUTH_PAGES.consent), {}, "allow");
      assert(back.location?.startsWith(`${REDIRECT_URI}?`), `redirected to ${back.location}`);
      const params = redirectParams(back.location!);
      assertEquals(params.get("state"), state);
      const tokens = await step(
        "completeAuthorizationCodeGrant (new account)",
        () => oauth.completeAuthorizationCodeGrant(params.get("code")!, REDIRECT_URI),
      );
      const userId = `@newcomer:${server.serverName}`;
      const client = clientOn(server, failures, userId, "JSSDKNEW1", tokens.access_token);
      const whoami = await step("whoami (new account)", () => client.whoami());
      assertEquals([whoami.user_id, whoami.device_id], [userId, "JSSDKNEW1"]);
      // The account has only the OAuth session's device (registration made none of its own).
      const devices = await step("getDevices (new account)", () => client.getDevices());
      assertEquals(devices.devices.map((d) => d.device_id), ["JSSDKNEW1"]);
    }),
});
