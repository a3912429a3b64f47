/**
 * Storage port for accounts, devices, token hashes, user-interactive auth sessions and login
 * tokens. Tokens are stored only by their SHA-256 hash (see domain/accounts/tokens.ts).
 */

/** A local account. */
export interface AccountRecord {
  userId: string;
  /** scrypt hash; absent for accounts registered without a password. */
  passwordHash?: string;
  createdAt: number;
  deactivated: boolean;
}

/** A device (one login) of a local user, with the hashes of its current tokens. */
export interface DeviceRecord {
  userId: string;
  deviceId: string;
  displayName?: string;
  createdAt: number;
  lastSeenTs?: number;
  lastSeenIp?: string;
  accessTokenHash?: string;
  refreshTokenHash?: string;
}

/** What an access token hash points to. */
export interface AccessTokenRecord {
  userId: string;
  deviceId: string;
  tokenId: string;
  /** Milliseconds since the epoch; absent for tokens that do not expire. */
  expiresAt?: number;
}

/** What a refresh token hash points to. */
export interface RefreshTokenRecord {
  userId: string;
  deviceId: string;
}

/** A device's new tokens, written together with the device record. */
export interface IssuedTokens {
  accessHash: string;
  access: AccessTokenRecord;
  refreshHash?: string;
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
  /** Create an account, and optionally its first device with tokens; false if the ID is taken. */
  createAccount(
    account: AccountRecord,
    device?: DeviceRecord,
    tokens?: IssuedTokens,
  ): Promise<boolean>;
  /** Replace the account record (password change, deactivation). */
  putAccount(account: AccountRecord): Promise<void>;

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
  /** Delete devices and their tokens; returns the token hashes that were revoked. */
  deleteDevices(userId: string, deviceIds: string[]): Promise<string[]>;

  getAccessToken(hash: string): Promise<AccessTokenRecord | null>;
  getRefreshToken(hash: string): Promise<RefreshTokenRecord | null>;

  getUiaSession(id: string): Promise<UiaSessionRecord | null>;
  putUiaSession(session: UiaSessionRecord): Promise<void>;
  deleteUiaSession(id: string): Promise<void>;

  putLoginToken(hash: string, record: LoginTokenRecord): Promise<void>;
  /** Read and delete a login token in one commit (single use); null when unknown or used. */
  takeLoginToken(hash: string): Promise<LoginTokenRecord | null>;
}
