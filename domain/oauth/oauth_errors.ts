/**
 * OAuth 2.0 protocol errors (RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 8628 §3.5): the JSON body is
 * `{"error", "error_description"}`, not a Matrix error, because OAuth clients (and matrix-js-sdk's
 * OAuth2 helpers) read that shape from the token, registration and revocation endpoints.
 */

/** The error codes this server answers with. */
export type OAuthErrorCode =
  | "invalid_request"
  | "invalid_client"
  | "invalid_grant"
  | "unauthorized_client"
  | "unsupported_grant_type"
  | "invalid_scope"
  | "access_denied"
  | "unsupported_response_type"
  | "unsupported_token_type"
  | "server_error"
  | "temporarily_unavailable"
  | "login_required"
  | "consent_required"
  | "invalid_redirect_uri"
  | "invalid_client_metadata"
  | "authorization_pending"
  | "slow_down"
  | "expired_token";

/** An OAuth error with its HTTP status; routes render it as `{error, error_description}`. */
export class OAuthError extends Error {
  /** Build from the code, a description saying why (shown to developers) and the status. */
  constructor(
    readonly error: OAuthErrorCode,
    readonly description: string,
    readonly status: 400 | 401 | 403 | 429 | 500 | 503 = 400,
  ) {
    super(`${error}: ${description}`);
    this.name = "OAuthError";
  }

  /** The response body. */
  toJSON(): { error: OAuthErrorCode; error_description: string } {
    return { error: this.error, error_description: this.description };
  }
}
