/** Who is making a client request: the user and device behind an access token. */

/** An authenticated client session. */
export interface Session {
  userId: string;
  deviceId: string;
  /** Identifies the access token, so logout can revoke exactly it. */
  tokenId: string;
  /** A guest account's token: only the guest endpoints may be called with it. */
  isGuest?: boolean;
  /** An administrator locked the account: only logging out is allowed. */
  locked?: boolean;
  /** An administrator suspended the account: reads are allowed, most writes are not. */
  suspended?: boolean;
  /**
   * The token was issued through the OAuth 2.0 API (an OAuth session): user-interactive auth
   * offers `m.oauth` to it instead of a password.
   */
  oauth?: true;
}

/** Resolves access tokens to sessions; implemented by the accounts store. */
export interface SessionResolver {
  /**
   * The session for a token, or null when the token is unknown or revoked. An expired token that
   * can be refreshed throws M_UNKNOWN_TOKEN with `soft_logout: true`.
   */
  resolveAccessToken(token: string): Promise<Session | null>;
  /** Record that the session's device made a request (last seen time, address, user agent). */
  noteActivity?(
    session: Session,
    ip: string | undefined,
    userAgent: string | undefined,
  ): Promise<void>;
}
