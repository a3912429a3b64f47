/**
 * Authorization requests between the authorization endpoint and the consent page: the endpoint
 * validates the request and parks it here under a random ID for 15 minutes, while the browser
 * signs in (or registers); the consent page takes it exactly once.
 */
import { randomId } from "../accounts/tokens.ts";
import type {
  PendingAuthorizationRecord,
  PendingAuthorizationStore,
} from "../ports/pending_authorization_store.ts";
import type { AuthorizationRequest } from "./oauth_types.ts";

/** How long a user has to sign in and consent. */
export const PENDING_AUTHORIZATION_LIFETIME_MS = 15 * 60_000;

/** Request IDs are base64url of 24 random bytes (32 characters). */
const REQUEST_ID = /^[A-Za-z0-9_-]{32}$/;

/** Parks and takes validated authorization requests. */
export class PendingAuthorizations {
  private readonly now: () => number;

  /** Over a store; `now` injectable for expiry tests. */
  constructor(private readonly store: PendingAuthorizationStore, now?: () => number) {
    this.now = now ?? Date.now;
  }

  /** Park a validated request; returns its ID (unguessable: it names the consent page). */
  async park(request: AuthorizationRequest): Promise<string> {
    const requestId = randomId(24);
    const now = this.now();
    await this.store.put(requestId, {
      request,
      createdAt: now,
      expiresAt: now + PENDING_AUTHORIZATION_LIFETIME_MS,
    });
    return requestId;
  }

  /** The parked request, still there; null when unknown, malformed or expired. */
  async get(requestId: string): Promise<PendingAuthorizationRecord | null> {
    if (!REQUEST_ID.test(requestId)) return null;
    const record = await this.store.get(requestId);
    return record && record.expiresAt > this.now() ? record : null;
  }

  /** Take the request for good (consent given or refused); null if gone or taken already. */
  async take(requestId: string): Promise<PendingAuthorizationRecord | null> {
    if (!REQUEST_ID.test(requestId)) return null;
    const record = await this.store.take(requestId);
    return record && record.expiresAt > this.now() ? record : null;
  }
}
