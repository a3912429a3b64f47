/**
 * The port to an upstream OpenID Connect provider users may sign in with (Tessera as a relying
 * party). The adapter (outbound/upstream_oidc_client.ts, on oauth4webapi) discovers the
 * provider, builds the authorization URL (PKCE S256, state, nonce) and checks what comes back:
 * the callback parameters, the token response and the ID token's claims.
 */

/** One authorization request about to be sent to the provider; the caller keeps the secrets. */
export interface UpstreamAuthorization {
  /** Where to send the browser. */
  url: string;
  /** Sent as `state`; the callback is matched to the request by it. */
  state: string;
  /** Sent as `nonce`; the ID token must carry it. */
  nonce: string;
  /** The PKCE verifier whose S256 challenge the URL carries. */
  codeVerifier: string;
}

/** Who the provider says signed in. */
export interface UpstreamIdentity {
  /** The provider's issuer identifier (links are per issuer and subject). */
  issuer: string;
  /** The ID token's `sub`. */
  subject: string;
  /** The ID token's claims, completed by the userinfo endpoint's when the provider has one. */
  claims: Readonly<Record<string, unknown>>;
}

/**
 * Why a sign-in with the provider failed:
 * - `unreachable`: discovery or the token request got no usable answer (a later try may work);
 * - `refused`: the provider's address is not allowed (private or loopback without the setting);
 * - `denied`: the provider answered the callback with an error (the user cancelled, ...);
 * - `invalid`: the callback, the token response or the ID token failed a check.
 */
export type UpstreamFailure = "unreachable" | "refused" | "denied" | "invalid";

/** A failed exchange with the provider; the message is for logs and the error page. */
export class UpstreamOidcError extends Error {
  /** Build from the failure kind and what went wrong. */
  constructor(readonly failure: UpstreamFailure, message: string) {
    super(message);
    this.name = "UpstreamOidcError";
  }
}

/** The relying-party side of one configured provider. */
export interface UpstreamOidc {
  /** Fresh state, nonce and PKCE verifier, and the authorization URL carrying them. */
  beginAuthorization(redirectUri: string): Promise<UpstreamAuthorization>;
  /**
   * Check the callback's parameters against the request (state, `iss`, error), exchange the
   * code (with the verifier) and check the ID token (issuer, audience, expiry, nonce).
   * Throws UpstreamOidcError.
   */
  completeAuthorization(request: {
    callbackParams: URLSearchParams;
    redirectUri: string;
    state: string;
    nonce: string;
    codeVerifier: string;
  }): Promise<UpstreamIdentity>;
}
