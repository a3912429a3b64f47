/**
 * The OAuth attack suite's server: the real assembly (`startTestServer`) listening on a loopback
 * port over real HTTP, its issuer (`TESSERA_PUBLIC_BASEURL`) set to that address, so redirects,
 * cookies and Origin checks are what a browser and a client would meet.
 */
import { assert, assertEquals } from "../assert.ts";
import { OAUTH_ENDPOINTS, OAUTH_PAGES } from "../../domain/oauth/oauth_paths.ts";
import { FAST_HASHING, registerUser } from "../routes/client_harness.ts";
import {
  Browser,
  type BrowserResponse,
  formTo,
  passwordSignIn,
  redirectParams,
} from "../routes/oauth/browser_flow.ts";
import { startTestServer } from "../routes/test_server.ts";
import { jsonRequest } from "../json_request.ts";
import type { JsonResponse, RequestOptions } from "../routes/test_server.ts";

/** A listening server: its base URL, the in-process handle (deps, kv) and a JSON client. */
export interface ListeningServer {
  /** `http://127.0.0.1:<port>`, also the issuer without its trailing slash. */
  readonly baseUrl: string;
  readonly inner: Awaited<ReturnType<typeof startTestServer>>;
  /** A JSON request over HTTP (the token as a bearer). */
  request(method: string, path: string, options?: RequestOptions): Promise<JsonResponse>;
  close(): Promise<void>;
}

/** Start the server on a free loopback port; `env` adds configuration variables. */
export async function startListeningServer(
  env: Record<string, string> = {},
): Promise<ListeningServer> {
  // Listen first, on port 0, and build the server for the port it got: a port picked free and
  // bound later may be taken meanwhile by another test process running in parallel.
  const target: { fetch?: (request: Request) => Response | Promise<Response> } = {};
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) => target.fetch?.(request) ?? new Response("starting", { status: 503 }),
  );
  const baseUrl = `http://127.0.0.1:${http.addr.port}`;
  let inner;
  try {
    inner = await startTestServer({
      TESSERA_PUBLIC_BASEURL: baseUrl,
      TESSERA_RATE_LIMITS: "off",
      ...env,
    }, FAST_HASHING);
  } catch (error) {
    await http.shutdown();
    throw error;
  }
  target.fetch = inner.app.fetch;
  return {
    baseUrl,
    inner,
    request: (method, path, options) =>
      jsonRequest((p, init) => fetch(`${baseUrl}${p}`, init), method, path, options),
    close: async () => {
      await http.shutdown();
      inner.close();
    },
  };
}

/** POST a form (`application/x-www-form-urlencoded`) and parse the JSON answer. */
export async function postForm(
  baseUrl: string,
  path: string,
  fields: Record<string, string>,
): Promise<JsonResponse> {
  const res = await fetch(`${baseUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
    body: new URLSearchParams(fields),
  });
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  return { status: res.status, body, headers: res.headers };
}

/**
 * Every entry of the store as "key@versionstamp": what a refused request must leave unchanged
 * (a new key or a rewritten one both show).
 */
export async function kvSnapshot(kv: Deno.Kv): Promise<string[]> {
  const part = (p: Deno.KvKeyPart) =>
    p instanceof Uint8Array ? `b:${[...p].join(",")}` : `${typeof p}:${String(p)}`;
  const entries: string[] = [];
  for await (const entry of kv.list({ prefix: [] })) {
    entries.push(`${entry.key.map(part).join("/")}@${entry.versionstamp}`);
  }
  return entries.sort();
}

/** A PKCE verifier and its S256 challenge (RFC 7636 §4.2). */
export async function pkcePair(): Promise<{ verifier: string; challenge: string }> {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(48)));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return { verifier, challenge: base64url(new Uint8Array(digest)) };
}

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
}

/** The client_uri of the test clients. */
export const CLIENT_URI = "https://example.com";

/** A registration body (a web client of CLIENT_URI) with `overrides`. */
export function registration(overrides: Record<string, unknown>): Record<string, unknown> {
  return {
    client_name: "Attack test client",
    client_uri: CLIENT_URI,
    redirect_uris: ["https://example.com/callback"],
    response_types: ["code"],
    grant_types: ["authorization_code", "refresh_token"],
    token_endpoint_auth_method: "none",
    ...overrides,
  };
}

/** Run `body` on a fresh listening server (`env` added), closing it afterwards. */
export async function withServer(
  body: (server: ListeningServer) => Promise<void>,
  env: Record<string, string> = {},
): Promise<void> {
  const server = await startListeningServer(env);
  try {
    await body(server);
  } finally {
    await server.close();
  }
}

/** The test users' password. */
export const PASSWORD = "attack test password";
/** The web test client's redirect URI. */
export const WEB_REDIRECT = "https://example.com/callback";
/** A native test client's loopback redirect URI (no port: any port at authorization). */
export const NATIVE_REDIRECT = "http://127.0.0.1/callback";

/** Register a client (web by default) and return its ID. */
export async function registerClient(
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
export async function signedInBrowser(
  server: ListeningServer,
  localpart: string,
): Promise<Browser> {
  await registerUser(server.inner, localpart, PASSWORD).catch(() => {});
  const browser = new Browser(fetch, { origin: server.baseUrl });
  const res = await passwordSignIn(browser, localpart, PASSWORD, OAUTH_PAGES.account);
  assert(res.status === 302 || res.status === 303, `sign-in: ${res.status} ${res.text}`);
  return browser;
}

/** Authorization request parameters; `undefined` values are left out. */
export function authorizationUrl(
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
export async function consentPage(browser: Browser, url: string): Promise<BrowserResponse> {
  const page = await browser.open(url);
  assertEquals(page.status, 200, `${page.url}: ${page.text}`);
  assert(new URL(page.url).pathname.startsWith(OAUTH_PAGES.consent), `landed on ${page.url}`);
  return page;
}

/** Consent to a request and return the code the client receives. */
export async function obtainCode(
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
export function exchange(
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
export function refresh(server: ListeningServer, clientId: string, refreshToken: string) {
  return postForm(server.baseUrl, OAUTH_ENDPOINTS.token, {
    grant_type: "refresh_token",
    refresh_token: refreshToken,
    client_id: clientId,
  });
}

/** whoami's status with `token`. */
export async function whoamiStatus(server: ListeningServer, token: string): Promise<number> {
  return (await server.request("GET", "/_matrix/client/v3/account/whoami", { token })).status;
}

/** The user's device IDs (read from the store through the account service). */
export async function deviceIds(server: ListeningServer, userId: string): Promise<string[]> {
  const devices = await server.inner.deps.accounts.listDevices(userId);
  return devices.map((d) => d.deviceId).sort();
}
