/**
 * Storage port for the OAuth 2.0 grants in flight: authorization codes (by SHA-256 hash, single
 * use), the record of spent codes (so a replayed code ends the session it created), device
 * authorizations (RFC 8628: by device code hash, and by user code for the link page), and the
 * ID-token signing key. Every record with a lifetime carries `expiresAt`, checked on read (KV's
 * `expireIn` only drops records some time after).
 */
import type { MatrixScope } from "../oauth/oauth_types.ts";

/** An authorization code waiting for its exchange (domain/oauth/oauth_grants.ts). */
export interface AuthorizationCodeRecord {
  clientId: string;
  /** The redirect URI exactly as the authorization request gave it. */
  redirectUri: string;
  codeChallenge: string;
  userId: string;
  scope: MatrixScope;
  nonce?: string;
  /** When the user last signed in (ms), for the ID token's `auth_time`. */
  authTime: number;
  expiresAt: number;
}

/** The OAuth session a grant created: what ending it deletes. */
export interface GrantedSession {
  userId: string;
  deviceId: string;
  oauthSessionId: string;
}

/**
 * A code that was exchanged (or is being exchanged): `session` once the exchange created it,
 * `replayed` once the code was presented again.
 */
export interface SpentCodeRecord {
  clientId: string;
  session?: GrantedSession;
  replayed?: boolean;
  expiresAt: number;
}

/** A device authorization (RFC 8628) from its start to its single successful poll. */
export interface DeviceGrantRecord {
  /** Normalised user code: 8 letters, no dash. */
  userCode: string;
  clientId: string;
  scope: MatrixScope;
  status: "pending" | "approved" | "denied";
  /** Who approved it, and when (the ID token's `auth_time`). */
  userId?: string;
  authTime?: number;
  /** Seconds the client must wait between polls; grows by 5 after each `slow_down`. */
  interval: number;
  /** When the client last polled (ms); absent before the first poll. */
  lastPolledAt?: number;
  expiresAt: number;
}

/** Storage of grants in flight. */
export interface OAuthGrantStore {
  /** Store a new authorization code until it expires. */
  putCode(hash: string, record: AuthorizationCodeRecord): Promise<void>;
  /**
   * Take a code: read it, delete it and write a spent-code record (`clientId`, no session yet)
   * in one commit, so exactly one caller gets the record. Null when unknown or already taken
   * (expiry is the caller's check: an expired code is taken too, and refused).
   */
  takeCode(hash: string, spentUntil: number): Promise<AuthorizationCodeRecord | null>;
  /** The spent-code record of a code, or null when the code was never exchanged (or long ago). */
  getSpentCode(hash: string): Promise<SpentCodeRecord | null>;
  /**
   * Update a spent-code record atomically (optimistic retry): `update` gets the current record
   * and returns the new one. Returns what was stored, or null when there is no record.
   */
  updateSpentCode(
    hash: string,
    update: (current: SpentCodeRecord) => SpentCodeRecord,
  ): Promise<SpentCodeRecord | null>;

  /**
   * Create a device authorization under its device code hash and its user code, in one commit;
   * false when the user code is already in use (the caller picks another).
   */
  createDeviceGrant(deviceCodeHash: string, record: DeviceGrantRecord): Promise<boolean>;
  /** A device authorization by device code hash (null when unknown or expired). */
  getDeviceGrant(deviceCodeHash: string): Promise<DeviceGrantRecord | null>;
  /** The device code hash a normalised user code names (null when unknown or expired). */
  deviceCodeHashFor(userCode: string): Promise<string | null>;
  /**
   * Update a device authorization atomically (optimistic retry). `update` returns the new
   * record, or `"delete"` to remove it and its user code (single use once approved), or null to
   * leave it unchanged. Returns the record `update` was given, or null when there was none.
   */
  updateDeviceGrant(
    deviceCodeHash: string,
    update: (current: DeviceGrantRecord) => DeviceGrantRecord | "delete" | null,
  ): Promise<DeviceGrantRecord | null>;
}

/** Where the ID-token signing key lives: one key for every process, created once. */
export interface SigningKeyStore {
  /**
   * The stored private key (a JWK), or the one `create` makes, stored if no other process
   * stored one first (create-if-absent): every caller ends up with the same key.
   */
  getOrCreate(create: () => Promise<JsonWebKey>): Promise<JsonWebKey>;
}
