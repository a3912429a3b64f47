/**
 * Browser sessions of the sign-in, consent and account pages. The browser holds a random cookie
 * value; KV holds only its SHA-256 (a read of the store cannot be replayed as a cookie). Every
 * resolve reads KV and checks the account is still active, so a sign-out or a deactivation in
 * any process ends the session everywhere at once.
 */
import { randomId, tokenHash } from "../accounts/tokens.ts";
import type { BrowserSessionRecord, BrowserSessionStore } from "../ports/browser_session_store.ts";

/** How long a browser stays signed in to the pages. */
export const BROWSER_SESSION_LIFETIME_MS = 7 * 24 * 60 * 60_000;

/** What the service needs. */
export interface BrowserSessionsDeps {
  store: BrowserSessionStore;
  /** Whether the account may still sign in (exists, not deactivated). */
  accountActive: (userId: string) => Promise<boolean>;
  now?: () => number;
}

/** A new browser session: the cookie value for the browser, the record for the pages. */
export interface StartedBrowserSession {
  cookieValue: string;
  session: BrowserSessionRecord;
}

/** Starts, resolves and ends browser sessions. */
export class BrowserSessions {
  private readonly now: () => number;

  /** Over a store and an account check. */
  constructor(private readonly deps: BrowserSessionsDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** Sign `userId` in now (the caller checked the credentials): a new session and cookie. */
  async start(userId: string): Promise<StartedBrowserSession> {
    const cookieValue = randomId(32);
    const now = this.now();
    const session: BrowserSessionRecord = {
      sessionId: randomId(12),
      userId,
      csrfToken: randomId(24),
      authenticatedAt: now,
      expiresAt: now + BROWSER_SESSION_LIFETIME_MS,
    };
    await this.deps.store.put(tokenHash(cookieValue), session);
    return { cookieValue, session };
  }

  /** The session behind a cookie value; null when unknown, expired or its account is gone. */
  async resolve(cookieValue: string): Promise<BrowserSessionRecord | null> {
    // Cookie values we issue are 43 characters; anything far longer is not worth hashing.
    if (cookieValue.length === 0 || cookieValue.length > 256) return null;
    const session = await this.deps.store.get(tokenHash(cookieValue));
    if (!session || session.expiresAt <= this.now()) return null;
    if (!(await this.deps.accountActive(session.userId))) return null;
    return session;
  }

  /** End every browser session of a user (password change); how many there were. */
  endAll(userId: string): Promise<number> {
    return this.deps.store.deleteAllOf(userId);
  }

  /** End the session behind a cookie value (sign-out). */
  async end(cookieValue: string): Promise<void> {
    if (cookieValue.length === 0 || cookieValue.length > 256) return;
    await this.deps.store.delete(tokenHash(cookieValue));
  }
}
