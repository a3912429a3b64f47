/**
 * The records the parts of the authorization server share: a registered client, a parsed
 * scope, a validated authorization request, and what the token endpoint answers.
 */

/** A client registered through RFC 7591 (validated by domain/oauth/client_metadata.ts). */
export interface OAuthClient {
  clientId: string;
  applicationType: "web" | "native";
  clientUri: string;
  clientName?: string;
  logoUri?: string;
  tosUri?: string;
  policyUri?: string;
  /** As registered; a loopback one matches any port at authorization time. */
  redirectUris: string[];
  grantTypes: string[];
  responseTypes: string[];
  /** Only public clients are registered: PKCE stands in for a secret. */
  tokenEndpointAuthMethod: "none";
  createdAt: number;
}

/** A scope string understood (domain/oauth/scopes.ts). */
export interface MatrixScope {
  /** `urn:matrix:client:api:*` (or MSC2967's unstable spelling) was asked for. */
  api: boolean;
  /** From `urn:matrix:client:device:<id>`: the device the session creates or binds. */
  deviceId?: string;
  /** `openid`: an ID token is issued with the tokens. */
  openid: boolean;
  /** The scope as granted, normalised (space-separated, in the client's spelling). */
  scope: string;
}

/** An authorization request whose client, redirect URI and parameters were validated. */
export interface AuthorizationRequest {
  clientId: string;
  /** Exactly as the client sent it (a loopback URI keeps its port); codes are bound to it. */
  redirectUri: string;
  responseMode: "query" | "fragment";
  state?: string;
  scope: MatrixScope;
  /** S256 challenge (base64url of SHA-256 of the verifier, 43 characters). */
  codeChallenge: string;
  /** OpenID Connect nonce, echoed in the ID token. */
  nonce?: string;
  /** `create` (show registration first), `login` (sign in again), `none`, `consent`. */
  prompt?: "create" | "login" | "none" | "consent";
}

/** What the token endpoint answers (RFC 6749 §5.1), for every grant. */
export interface TokenResponse {
  access_token: string;
  token_type: "Bearer";
  /** Seconds. */
  expires_in: number;
  refresh_token: string;
  scope: string;
  /** With the `openid` scope. */
  id_token?: string;
}

/** A device authorization (RFC 8628) waiting for its user, as the link page shows it. */
export interface PendingDeviceAuthorization {
  userCode: string;
  clientId: string;
  scope: MatrixScope;
  expiresAt: number;
  status: "pending" | "approved" | "denied";
}
