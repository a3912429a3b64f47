/**
 * Storage port for the sign-in pages' browser sessions (domain/oauth/browser_sessions.ts): one
 * record per SHA-256 of the cookie value, so a leaked store reveals no usable cookie.
 */

/** A signed-in browser. */
export interface BrowserSessionRecord {
  /** A random ID naming the session (never the cookie value; safe to show and log). */
  sessionId: string;
  userId: string;
  /** The CSRF token every POST form of this session must carry. */
  csrfToken: string;
  /** When the user last proved who they are (password or upstream provider), ms. */
  authenticatedAt: number;
  /** Milliseconds since the epoch after which the session is void. */
  expiresAt: number;
}

/** Browser sessions by cookie hash. */
export interface BrowserSessionStore {
  /**
   * Store a session until `record.expiresAt` (the store may forget it any time after), listed
   * under its user for `deleteAllOf`.
   */
  put(cookieHash: string, record: BrowserSessionRecord): Promise<void>;
  /** The session of a cookie hash; null when unknown or forgotten. */
  get(cookieHash: string): Promise<BrowserSessionRecord | null>;
  /** Forget a session (sign-out); no error when it is already gone. */
  delete(cookieHash: string): Promise<void>;
  /** Forget every session of a user (password change); returns how many there were. */
  deleteAllOf(userId: string): Promise<number>;
}
