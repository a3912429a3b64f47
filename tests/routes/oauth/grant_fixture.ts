/**
 * What the grant tests share (token_test.ts, grant_races_test.ts): clients registered through
 * the registry, codes minted with `oauthGrants.issueCode` as the consent page would, and the
 * token endpoint's requests as clients send them (form bodies).
 */
import { OAUTH_ENDPOINTS } from "../../../domain/oauth/oauth_paths.ts";
import { DEVICE_CODE_GRANT_TYPE } from "../../../domain/oauth/oauth_grants.ts";
import { parseScope } from "../../../domain/oauth/scopes.ts";
import type { AuthorizationRequest, OAuthClient } from "../../../domain/oauth/oauth_types.ts";
import { pkcePair, type TestServer } from "./oauth_client_fixture.ts";

/** A web client on `host` allowed every grant (code, refresh, device). */
export function registerClient(
  server: TestServer,
  host = "app.example.org",
): Promise<OAuthClient> {
  return server.deps.oauthClients.register({
    client_name: `Client on ${host}`,
    client_uri: `https://${host}/`,
    application_type: "web",
    redirect_uris: [`https://${host}/callback`],
    grant_types: ["authorization_code", "refresh_token", DEVICE_CODE_GRANT_TYPE],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
  });
}

/** POST a form body; the answer's status, headers and parsed JSON (null when empty). */
export function postForm(server: TestServer, path: string, fields: Record<string, string>) {
  return postBody(server, path, new URLSearchParams(fields).toString(), {
    "content-type": "application/x-www-form-urlencoded",
  });
}

/** POST any body with any headers (for malformed requests). */
export async function postBody(
  server: TestServer,
  path: string,
  body: string,
  headers: HeadersInit,
) {
  const res = await server.app.request(path, { method: "POST", headers, body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

/** A code as the consent page mints it, with its verifier, request and device ID. */
export async function mintCode(
  server: TestServer,
  client: OAuthClient,
  userId: string,
  options: { scope?: string; nonce?: string } = {},
) {
  const { verifier, challenge } = pkcePair();
  const request: AuthorizationRequest = {
    clientId: client.clientId,
    redirectUri: client.redirectUris[0],
    responseMode: "query",
    scope: parseScope(options.scope ?? "urn:matrix:client:api:* openid"),
    codeChallenge: challenge,
    ...(options.nonce !== undefined && { nonce: options.nonce }),
  };
  const code = await server.deps.oauthGrants.issueCode(request, userId);
  // parseScope picks a device ID when the scope names none.
  return { code, verifier, request, deviceId: request.scope.deviceId! };
}

/** Exchange a code (no `code_verifier` when `verifier` is undefined); `overrides` win. */
export function exchange(
  server: TestServer,
  client: OAuthClient,
  code: string,
  verifier: string | undefined,
  overrides: Record<string, string> = {},
) {
  return postForm(server, OAUTH_ENDPOINTS.token, {
    grant_type: "authorization_code",
    code,
    client_id: client.clientId,
    redirect_uri: client.redirectUris[0],
    ...(verifier !== undefined && { code_verifier: verifier }),
    ...overrides,
  });
}

/** The refresh_token grant. */
export function refresh(server: TestServer, clientId: string, refreshToken: string) {
  return postForm(server, OAUTH_ENDPOINTS.token, {
    grant_type: "refresh_token",
    refresh_token: refreshToken,
    client_id: clientId,
  });
}

/** GET /account/whoami with `token`. */
export function whoami(server: TestServer, token: string) {
  return server.request("GET", "/_matrix/client/v3/account/whoami", { token });
}
