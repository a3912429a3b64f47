/**
 * Storage port for authorization requests waiting for the user's consent (the authorization
 * endpoint stores them, the consent page takes them): one record per random request ID.
 */
import type { AuthorizationRequest } from "../oauth/oauth_types.ts";

/** A validated authorization request waiting for sign-in and consent. */
export interface PendingAuthorizationRecord {
  request: AuthorizationRequest;
  /** When the authorization endpoint received it (prompt=login asks for a sign-in after it). */
  createdAt: number;
  /** Milliseconds since the epoch after which the request is void. */
  expiresAt: number;
}

/** Pending authorization requests by ID. */
export interface PendingAuthorizationStore {
  /** Store a request until `record.expiresAt`. */
  put(requestId: string, record: PendingAuthorizationRecord): Promise<void>;
  /** The request; null when unknown or forgotten. */
  get(requestId: string): Promise<PendingAuthorizationRecord | null>;
  /**
   * Read and delete the request in one atomic commit: of two concurrent takes (two tabs, a
   * double submit) exactly one gets the record, so one request yields at most one code.
   */
  take(requestId: string): Promise<PendingAuthorizationRecord | null>;
}
