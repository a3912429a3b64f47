/**
 * What the page tests share: a registered OAuth client (through the real registration
 * endpoint), a PKCE pair, authorization URLs, a user with a password, and the code exchange.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { encodeBase64UrlUnpadded } from "../../../domain/protocol/base64.ts";
import { OAUTH_ENDPOINTS } from "../../../domain/oauth/oauth_paths.ts";
import { startTestServer } from "../test_server.ts";
import { Browser } from "./browser_flow.ts";

/** A started test server. */
export type TestServer = Awaited<ReturnType<typeof startTestServer>>;

/** Web client redirect URI (registered on the client_uri host). */
export const WEB_REDIRECT = "https://app.example/callback";
/** Native loopback redirect URI, registered without a port. */
export const LOOPBACK_REDIRECT = "http://127.0.0.1/callback";

/** Register a client over HTTP; returns its client_id. */
export async function registerClient(
  server: TestServer,
  metadata: Record<string, unknown> = {},
): Promise<string> {
  const res = await server.request("POST", OAUTH_ENDPOINTS.registration, {
    body: {
      client_name: "Example App",
      client_uri: "https://app.example",
      redirect_uris: [WEB_REDIRECT],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      ...metadata,
    },
  });
  if (res.status !== 201) {
    throw new Error(`registration: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return res.body.client_id;
}

/** A native client with a loopback redirect URI. */
export function registerNativeClient(server: TestServer): Promise<string> {
  return registerClient(server, {
    application_type: "native",
    redirect_uris: [LOOPBACK_REDIRECT],
  });
}

/** A fresh PKCE verifier and its S256 challenge. */
export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = encodeBase64UrlUnpadded(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = encodeBase64UrlUnpadded(sha256(new TextEncoder().encode(verifier)));
  return { verifier, challenge };
}

/** An authorization endpoint path; `params` override (undefined removes one). */
export function authorizePath(
  clientId: string,
  challenge: string,
  params: Record<string, string | undefined> = {},
): string {
  const all: Record<string, string | undefined> = {
    client_id: clientId,
    redirect_uri: WEB_REDIRECT,
    response_type: "code",
    scope: "urn:matrix:client:api:* urn:matrix:client:device:PAGEDEVICE",
    state: "state-123",
    code_challenge: challenge,
    code_challenge_method: "S256",
    ...params,
  };
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(all)) if (v !== undefined) query.set(k, v);
  return `${OAUTH_ENDPOINTS.authorization}?${query}`;
}

/** Register a user with a password over the client API. */
export async function createUser(server: TestServer, localpart: string, password: string) {
  const res = await server.request("POST", "/_matrix/client/v3/register", {
    body: { username: localpart, password, auth: { type: "m.login.dummy" } },
  });
  if (res.status !== 200) throw new Error(`register ${localpart}: ${res.status}`);
  return { userId: res.body.user_id as string, accessToken: res.body.access_token as string };
}

/** A browser over the in-process app. */
export function browserFor(server: TestServer, postOrigin?: string | null): Browser {
  return new Browser((input, init) => server.app.request(input, init), {
    ...(postOrigin !== undefined ? { postOrigin } : {}),
  });
}

/** Exchange a code at the token endpoint (form body, as clients send it). */
export async function exchangeCode(
  server: TestServer,
  input: { code: string; clientId: string; verifier: string; redirectUri?: string },
) {
  const res = await server.app.request(OAUTH_ENDPOINTS.token, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: input.code,
      client_id: input.clientId,
      redirect_uri: input.redirectUri ?? WEB_REDIRECT,
      code_verifier: input.verifier,
    }).toString(),
  });
  return { status: res.status, body: await res.json() };
}
