/**
 * Storage port for accounts, devices, token hashes, user-interactive auth sessions and login
 * tokens. Tokens are stored only by their SHA-256 hash (see domain/accounts/tokens.ts).
 */
import type { JsonObject } from "../protocol/json.ts";

/** A local account. */
export interface AccountRecord {
  userId: string;
  /** scrypt hash; absent for accounts registered without a password. */
  passwordHash?: string;
  createdAt: number;
  deactivated: boolean;
  /**
   * Set with `deactivated` until the deactivation's follow-up work (leaving rooms, rejecting
   * invites, dropping per-user data) has finished; see AccountStore.markDeactivated.
   */
  deactivationPending?: boolean;
  /** Deactivated with `erase`: the profile (display name, avatar) is cleared as well. */
  erase?: boolean;
  /** A guest account (spec: guest access) until it is upgraded by registering. */
  guest?: boolean;
}

/** A device (one login) of a local user, with the hashes of its current tokens. */
export interface DeviceRecord {
  userId: string;
  deviceId: string;
  displayName?: string;
  createdAt: number;
  lastSeenTs?: number;
  lastSeenIp?: string;
  /** The User-Agent of the device's last recorded request (at most 512 characters). */
  lastSeenUserAgent?: string;
  accessTokenHash?: string;
  refreshTokenHash?: string;
  /**
   * Set on a user's dehydrated device (MSC3814): created without tokens by the device that
   * uploaded it, and never logged into; a client rehydrates it by reading its data and inbox.
   */
  dehydrated?: boolean;
  /** An OAuth session's device: the client it was granted to (domain/oauth/oauth_grants.ts). */
  oauthClientId?: string;
  /**
   * An OAuth session's device: a random ID per grant, so a later grant that rebinds the same
   * device ID is told apart from the one a replayed code or refresh token belongs to.
   */
  oauthSessionId?: string;
  /** An OAuth session's device: the scope granted, as the token endpoint answered it. */
  oauthScope?: string;
}

/** A user's dehydrated device (MSC3814): its ID and the client's opaque rehydration data. */
export interface DehydratedDeviceRecord {
  deviceId: string;
  /** `device_data` as uploaded: an object with at least a string `algorithm`. */
  deviceData: JsonObject;
}

/**
 * What creating a dehydrated device did: `created`; `device_exists` when some device already
 * has that ID; `occupied` when the user already has a dehydrated device (delete it first).
 */
export type DehydratedDeviceCreation = "created" | "device_exists" | "occupied";

/** What an access token hash points to. */
export interface AccessTokenRecord {
  userId: string;
  deviceId: string;
  tokenId: string;
  /** Milliseconds since the epoch; absent for tokens that do not expire. */
  expiresAt?: number;
  /** The token of a guest account: its requests are held to the guest rules. */
  guest?: boolean;
  /** Issued through the OAuth 2.0 API (Session.oauth). */
  oauth?: true;
}

/** What a refresh token hash points to. */
export interface RefreshTokenRecord {
  userId: string;
  deviceId: string;
  /** An OAuth session's refresh token: only the token endpoint rotates it (with reuse checks). */
  oauthSessionId?: string;
}

/**
 * A rotated OAuth refresh token, kept (by hash, 30 days) so presenting it again is recognised
 * as reuse and ends the session it belonged to.
 */
export interface SpentRefreshRecord {
  userId: string;
  deviceId: string;
  oauthSessionId: string;
  clientId: string;
  expiresAt: number;
}

/** A device's new tokens, written together with the device record. */
export interface IssuedTokens {
  accessHash: string;
  access: AccessTokenRecord;
  refreshHash?: string;
  /** An OAuth session's tokens: written into the refresh token's record. */
  oauthSessionId?: string;
}

/** A user-interactive auth session (stored with an expiry). */
export interface UiaSessionRecord {
  id: string;
  /** What the session authorises, e.g. "register" or "delete_devices"; checked on reuse. */
  action: string;
  /** The user the session belongs to (absent for registration). */
  userId?: string;
  completed: string[];
  /** Values a stage has established, e.g. the registration token that was accepted. */
  results: Record<string, unknown>;
  /** What exactly the session authorises (UiaRequest.operation); fixed when it starts. */
  operation?: string;
  /** The request parameters last given in the session (UiaRequest.clientParams). */
  params?: Record<string, unknown>;
  expiresAt: number;
}

/** A single-use login token (m.login.token). */
export interface LoginTokenRecord {
  userId: string;
  expiresAt: number;
}

/** Storage of accounts and sessions. */
export interface AccountStore {
  getAccount(userId: string): Promise<AccountRecord | null>;
  /**
   * Which of `userIds` are deactivated accounts erased at their request (`erase`), read from
   * the store on every call: the read pipeline redacts their events for later joiners.
   */
  erasedAmong(userIds: readonly string[]): Promise<Set<string>>;
  /** Create an account, and optionally its first device with tokens; false if the ID is taken. */
  createAccount(
    account: AccountRecord,
    device?: DeviceRecord,
    tokens?: IssuedTokens,
  ): Promise<boolean>;
  /** Replace the account record (password change, deactivation). */
  putAccount(account: AccountRecord): Promise<void>;
  /**
   * Replace `before` by `after` only if the stored record still equals `before` (a guest's
   * upgrade), optionally creating a device with tokens in the same commit; false otherwise.
   */
  replaceAccount(
    before: AccountRecord,
    after: AccountRecord,
    device?: DeviceRecord,
    tokens?: IssuedTokens,
  ): Promise<boolean>;
  /**
   * Write a deactivated account record (`deactivationPending` set), list the user among the
   * unfinished deactivations and revoke the access and refresh tokens of the user's devices, in
   * one commit: the account stops working in every process at once, and a process that dies
   * after it leaves work (deleting the devices, the hooks) that `pendingDeactivations` finds.
   */
  markDeactivated(account: AccountRecord): Promise<void>;
  /** Users whose deactivation's follow-up work is unfinished (at most `limit`). */
  pendingDeactivations(limit?: number): Promise<string[]>;
  /** The follow-up work of `userId`'s deactivation is done: clear the flag and the listing. */
  finishDeactivation(userId: string): Promise<void>;

  getDevice(userId: string, deviceId: string): Promise<DeviceRecord | null>;
  listDevices(userId: string): Promise<DeviceRecord[]>;
  /**
   * Create or update a device and make `tokens` its only tokens: hashes of its previous tokens
   * are deleted in the same commit. `update` receives the current record (or null).
   */
  issueTokens(
    userId: string,
    deviceId: string,
    update: (current: DeviceRecord | null) => DeviceRecord,
    tokens: IssuedTokens,
  ): Promise<DeviceRecord>;
  /** Update a device's metadata (display name, last seen); false when there is no such device. */
  updateDevice(
    userId: string,
    deviceId: string,
    update: (current: DeviceRecord) => DeviceRecord,
  ): Promise<boolean>;
  /**
   * Delete devices and their tokens; returns the token hashes that were revoked. A deleted
   * device that is the user's dehydrated device stops being it in the same commit.
   */
  deleteDevices(userId: string, deviceIds: string[]): Promise<string[]>;

  /** The user's dehydrated device (MSC3814; at most one per user), or null. */
  getDehydratedDevice(userId: string): Promise<DehydratedDeviceRecord | null>;
  /**
   * Create `device` (no tokens, marked `dehydrated`) and make it the user's dehydrated device
   * with `deviceData`, in one commit; nothing is written unless the outcome is `created`.
   */
  createDehydratedDevice(
    device: DeviceRecord,
    deviceData: JsonObject,
  ): Promise<DehydratedDeviceCreation>;

  getAccessToken(hash: string): Promise<AccessTokenRecord | null>;
  getRefreshToken(hash: string): Promise<RefreshTokenRecord | null>;

  /**
   * Rotate an OAuth session's tokens: only if the device still holds `spentHash` as its refresh
   * token (and `spent.oauthSessionId` as its session), make `tokens` its only tokens and keep
   * `spent` under `spentHash`, in one commit. False when the device or token moved on.
   */
  rotateOAuthTokens(
    userId: string,
    deviceId: string,
    spentHash: string,
    spent: SpentRefreshRecord,
    tokens: IssuedTokens,
  ): Promise<boolean>;
  /**
   * Delete an OAuth session's device with its tokens, only if the device still belongs to
   * `oauthSessionId` (checked in the delete's commit); true when it was deleted.
   */
  deleteOAuthDevice(userId: string, deviceId: string, oauthSessionId: string): Promise<boolean>;
  /** A spent OAuth refresh token's record (null when unknown or past `expiresAt`). */
  getSpentRefresh(hash: string): Promise<SpentRefreshRecord | null>;

  getUiaSession(id: string): Promise<UiaSessionRecord | null>;
  putUiaSession(session: UiaSessionRecord): Promise<void>;
  deleteUiaSession(id: string): Promise<void>;

  putLoginToken(hash: string, record: LoginTokenRecord): Promise<void>;
  /** Read and delete a login token in one commit (single use); null when unknown or used. */
  takeLoginToken(hash: string): Promise<LoginTokenRecord | null>;
}
