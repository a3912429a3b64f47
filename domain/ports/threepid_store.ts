/**
 * Storage port for third-party identifiers: the homeserver's own validation sessions (email
 * tokens it sent), the identifiers associated with accounts, and the identity servers each
 * user's identifiers were bound on (so they can be unbound later).
 */

/** The media the server knows. */
export type ThreepidMedium = "email" | "msisdn";

/** A validation session the homeserver started with `requestToken` (stored with an expiry). */
export interface ThreepidSessionRecord {
  sid: string;
  medium: ThreepidMedium;
  /** Canonical address (emails lower-cased). */
  address: string;
  clientSecret: string;
  /** SHA-256 of the token that was mailed; only the hash is kept. */
  tokenHash: string;
  /** The highest `send_attempt` seen; a repeat with the same or a lower one sends nothing. */
  sendAttempt: number;
  /** Where to send the user once the link is followed, with `sid` appended. */
  nextLink?: string;
  /** Milliseconds since the epoch; the token is refused after it. */
  expiresAt: number;
  /** Set once the token was submitted. */
  validatedAt?: number;
}

/** An identifier associated with an account on this server. */
export interface UserThreepidRecord {
  medium: ThreepidMedium;
  address: string;
  validatedAt: number;
  addedAt: number;
}

/** Where one of a user's identifiers was bound. */
export interface ThreepidBindingRecord {
  medium: string;
  address: string;
  idServer: string;
}

/** What adding an identifier to an account did. */
export type ThreepidAddOutcome = "added" | "already_yours" | "in_use";

/** Storage of validation sessions, account identifiers and identity-server bindings. */
export interface ThreepidStore {
  getSession(sid: string): Promise<ThreepidSessionRecord | null>;
  /** The unvalidated session of this client secret for this address, if any. */
  findPendingSession(
    medium: ThreepidMedium,
    clientSecret: string,
    address: string,
  ): Promise<ThreepidSessionRecord | null>;
  /** Create or replace a session (and its client-secret index), expiring at `expiresAt`. */
  putSession(session: ThreepidSessionRecord): Promise<void>;
  /**
   * Replace a session only if it has not changed since it was read (`expected` is what was
   * read); false when another request got there first.
   */
  replaceSession(expected: ThreepidSessionRecord, next: ThreepidSessionRecord): Promise<boolean>;

  /** The user's identifiers, in medium then address order. */
  listThreepids(userId: string): Promise<UserThreepidRecord[]>;
  /** The local user an identifier belongs to, or null. */
  ownerOf(medium: string, address: string): Promise<string | null>;
  /** Associate an identifier with a user; one identifier belongs to one user at most. */
  addThreepid(userId: string, threepid: UserThreepidRecord): Promise<ThreepidAddOutcome>;
  /** Remove an identifier from a user; false when the user did not have it. */
  removeThreepid(userId: string, medium: string, address: string): Promise<boolean>;

  /** Remember that an identifier of the user was bound on `idServer`. */
  addBinding(userId: string, binding: ThreepidBindingRecord): Promise<void>;
  /** Forget one binding. */
  removeBinding(userId: string, binding: ThreepidBindingRecord): Promise<void>;
  /** Every binding of the user, or only those of one identifier. */
  bindings(
    userId: string,
    threepid?: { medium: string; address: string },
  ): Promise<ThreepidBindingRecord[]>;
}
