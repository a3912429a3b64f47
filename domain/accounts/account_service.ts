/**
 * Accounts and their sessions: registration, login, token refresh, logout, password change and
 * deactivation. It is also the server's SessionResolver: every request reads its token record
 * from KV, with no cache in memory, so a revocation made by any process (logout, device
 * deletion, password change, deactivation) binds every other process at once. A cache checked
 * against a revocation key would cost the same KV read (scripts/bench_token_lookup.ts).
 */
import {
  checkRegistrationLocalpart,
  MAX_ID_BYTES,
  parseDeviceId,
  parseUserId,
} from "../protocol/identifiers.ts";
import { forbidden, MatrixError } from "../errors.ts";
import type { Session, SessionResolver } from "../session.ts";
import type { JsonObject } from "../protocol/json.ts";
import type {
  AccessTokenRecord,
  AccountRecord,
  AccountStore,
  DehydratedDeviceCreation,
  DehydratedDeviceRecord,
  DeviceRecord,
  IssuedTokens,
} from "../ports/account_store.ts";
import type { PasswordHasher } from "./password_hash.ts";
import type { PasswordFailureLimiter } from "./password_failures.ts";
import { GuestAccounts } from "./guest_accounts.ts";
import { AccountDeactivations } from "./account_deactivations.ts";
import { OAuthSessions } from "./oauth_sessions.ts";
import { newDeviceId, newLocalpart, newToken, randomId, tokenHash } from "./tokens.ts";

/** Lifetime of access tokens issued together with a refresh token. */
export const REFRESHABLE_TOKEN_LIFETIME_MS = 5 * 60_000;
/** Lifetime of m.login.token tokens minted by /login/get_token. */
export const LOGIN_TOKEN_LIFETIME_MS = 2 * 60_000;
/** Longest password accepted; scrypt cost does not depend on it, but bodies should stay small. */
export const MAX_PASSWORD_LENGTH = 512;

/** Options for any request that creates a device. */
export interface DeviceOptions {
  deviceId?: string;
  displayName?: string;
  /** Issue a refresh token, and an expiring access token with it. */
  refreshToken?: boolean;
}

/** What a login or registration returns to the client. */
export interface IssuedSession {
  userId: string;
  deviceId: string;
  accessToken: string;
  refreshToken?: string;
  expiresInMs?: number;
}

/** Construction options of AccountService. */
export interface AccountServiceOptions {
  store: AccountStore;
  serverName: string;
  hasher: PasswordHasher;
  /** Failed password attempts per account; absent only when rate limits are turned off. */
  passwordFailures?: PasswordFailureLimiter;
  /**
   * Guest accounts may be used (TESSERA_GUEST_ACCESS). Off, a guest's token is refused with
   * 403 M_GUEST_ACCESS_FORBIDDEN, so turning guest access off shuts out existing guests too.
   */
  guestAccess?: boolean;
  now?: () => number;
}

/** How often a device's last-seen time is written at most (Synapse batches its writes too). */
export const DEVICE_ACTIVITY_INTERVAL_MS = 5 * 60_000;

/** Account use cases over the AccountStore port. */
export class AccountService implements SessionResolver {
  private readonly store: AccountStore;
  private readonly hasher: PasswordHasher;
  private readonly passwordFailures?: PasswordFailureLimiter;
  private readonly guestAccess: boolean;
  private readonly now: () => number;
  /** When this process last wrote each device's activity (`userId|deviceId` -> ms). */
  private readonly activityWritten = new Map<string, number>();
  readonly serverName: string;
  /** Guest accounts: registration, upgrade, and whether a user is one. */
  readonly guests: GuestAccounts;
  /** OAuth 2.0 sessions: their devices, refresh rotation with reuse detection, ending them. */
  readonly oauthSessions: OAuthSessions;
  /** Deactivation, its hooks, and resuming deactivations left pending. */
  readonly deactivations: AccountDeactivations;

  /** Build over a store; `now` is injectable for expiry tests. */
  constructor(options: AccountServiceOptions) {
    this.store = options.store;
    this.hasher = options.hasher;
    this.passwordFailures = options.passwordFailures;
    this.guestAccess = options.guestAccess ?? false;
    this.serverName = options.serverName;
    this.now = options.now ?? Date.now;
    this.deactivations = new AccountDeactivations({
      store: this.store,
      activeAccount: (userId) => this.activeAccount(userId),
      logoutAll: (userId) => this.logoutAll(userId),
    });
    this.guests = new GuestAccounts({
      store: this.store,
      serverName: this.serverName,
      now: this.now,
      prepareDevice: (userId, options) => this.newDevice(userId, options),
      deleteDevices: (userId, deviceIds) => this.deleteDevices(userId, deviceIds),
      deviceAdded: (userId, deviceId) => this.#deviceAdded(userId, deviceId),
    });
    this.oauthSessions = new OAuthSessions({
      store: this.store,
      now: this.now,
      checkCanLogIn: async (userId) => {
        await this.activeAccount(userId);
        for (const check of this.loginChecks) await check(userId);
      },
      prepareTokens: (userId, deviceId) => this.tokensFor(userId, deviceId, true),
      deviceRecord: (userId, deviceId, displayName) =>
        this.deviceRecord(userId, deviceId, displayName),
      checkDeviceId,
      devicesRemoved: (userId, deviceIds) => this.#devicesRemoved(userId, deviceIds),
      issueToDevice: (userId, deviceId, tokens, device) =>
        this.#issueToDevice(userId, deviceId, tokens, device),
    });
  }

  /** The session behind an access token, or null when unknown, expired or revoked. */
  async resolveAccessToken(token: string): Promise<Session | null> {
    const record = await this.store.getAccessToken(tokenHash(token));
    if (!record) return null;
    const now = this.now();
    const { userId, deviceId, tokenId, expiresAt, guest, oauth } = record;
    if (guest && !this.guestAccess) {
      throw new MatrixError("M_GUEST_ACCESS_FORBIDDEN", 403, "Guest access is not enabled");
    }
    // The spec's soft logout: the device still holds a refresh token, so the client refreshes
    // instead of discarding its session.
    if (expiresAt !== undefined && expiresAt <= now) {
      throw new MatrixError("M_UNKNOWN_TOKEN", 401, "Access token has expired", {
        soft_logout: true,
      });
    }
    if (guest) return { userId, deviceId, tokenId, isGuest: true };
    return oauth ? { userId, deviceId, tokenId, oauth: true } : { userId, deviceId, tokenId };
  }

  /** Whether a localpart could be registered now (M_INVALID_USERNAME / M_USER_IN_USE if not). */
  async checkAvailable(localpart: string): Promise<string> {
    const userId = this.userIdForRegistration(localpart);
    if (await this.store.getAccount(userId)) {
      throw new MatrixError("M_USER_IN_USE", 400, "That user ID is already taken");
    }
    return userId;
  }

  /**
   * Create an account; logs a device in unless `inhibitLogin`. The password may come already
   * hashed (`passwordHash`, from `hashNewPassword`) when an earlier request of the same
   * registration gave it.
   */
  async register(
    request: DeviceOptions & {
      localpart?: string;
      password?: string;
      passwordHash?: string;
      inhibitLogin?: boolean;
    },
  ): Promise<{ userId: string } & Partial<IssuedSession>> {
    // Usernames are case-insensitive for people; store the lowercase form, as other servers do.
    const userId = request.localpart !== undefined
      ? this.userIdForRegistration(request.localpart.toLowerCase())
      : `@${newLocalpart()}:${this.serverName}`;
    const account: AccountRecord = { userId, createdAt: this.now(), deactivated: false };
    if (request.password !== undefined) {
      account.passwordHash = await this.hashNewPassword(request.password);
    } else if (request.passwordHash !== undefined) {
      account.passwordHash = request.passwordHash;
    }
    if (request.inhibitLogin) {
      if (!(await this.store.createAccount(account))) throw userInUse();
      return { userId };
    }
    const { device, tokens, issued } = this.newDevice(userId, request);
    if (!(await this.store.createAccount(account, device, tokens))) throw userInUse();
    await this.#deviceAdded(userId, device.deviceId);
    return issued;
  }

  /** Check a new password against the rules and hash it (registration, password change). */
  hashNewPassword(password: string): Promise<string> {
    return this.hasher.hash(checkPassword(password));
  }

  /**
   * Log a new device in for a user this very registration session created (a retried
   * registration request answers with the same user, as the spec's idempotency asks).
   */
  loginRegistered(userId: string, options: DeviceOptions): Promise<IssuedSession> {
    return this.login(userId, options);
  }

  /** m.login.password: check the password of a local user and log a device in. */
  async loginWithPassword(
    user: string,
    password: string,
    options: DeviceOptions,
  ): Promise<IssuedSession> {
    const userId = this.userIdForLogin(user);
    await this.checkPassword(userId, password);
    return this.login(userId, options);
  }

  /** m.login.token: consume a single-use login token and log a device in. */
  async loginWithToken(token: string, options: DeviceOptions): Promise<IssuedSession> {
    const record = await this.store.takeLoginToken(tokenHash(token));
    if (!record) throw forbiddenLogin("Invalid or expired login token");
    await this.activeAccount(record.userId);
    return this.login(record.userId, options);
  }

  /** Mint a short-lived, single-use m.login.token for an authenticated user. */
  async createLoginToken(userId: string): Promise<{ token: string; expiresInMs: number }> {
    const token = newToken("login");
    await this.store.putLoginToken(tokenHash(token), {
      userId,
      expiresAt: this.now() + LOGIN_TOKEN_LIFETIME_MS,
    });
    return { token, expiresInMs: LOGIN_TOKEN_LIFETIME_MS };
  }

  /**
   * Throws 403 M_FORBIDDEN unless `password` is the user's (UIA m.login.password and login), and
   * 429 M_LIMIT_EXCEEDED, before checking anything, when the account has failed too often
   * lately: then even the right password is refused until the limit's window has passed.
   */
  async checkPassword(userId: string, password: string): Promise<void> {
    // Unknown users are counted too, so a 429 does not tell which accounts exist either.
    await this.passwordFailures?.reserve(userId);
    const account = await this.store.getAccount(userId);
    // Without a hash to check (unknown, deactivated or passwordless user), verify against a
    // dummy made with the same parameters: the answer must take as long as a wrong password's.
    const stored = account?.passwordHash;
    const matches = await this.hasher.verify(password, stored ?? this.hasher.dummyHash);
    if (account?.deactivationPending) await this.deactivations.finish(userId);
    if (!account || stored === undefined || !matches) {
      // Same answer as a wrong password, so the response does not reveal which users exist.
      throw forbiddenLogin("Invalid username or password");
    }
    await this.passwordFailures?.release(userId);
    if (account.deactivated) {
      throw new MatrixError("M_USER_DEACTIVATED", 403, "This account has been deactivated");
    }
  }

  /**
   * Whether the account has a password to confirm actions with (accounts provisioned through an
   * upstream provider have none: the account page asks them to sign in again instead).
   */
  async hasPassword(userId: string): Promise<boolean> {
    return (await this.store.getAccount(userId))?.passwordHash !== undefined;
  }

  /** Exchange a refresh token for new tokens; the old pair stops working. */
  async refresh(refreshToken: string): Promise<IssuedSession> {
    const oldHash = tokenHash(refreshToken);
    const record = await this.store.getRefreshToken(oldHash);
    if (!record) throw unknownToken("Unknown refresh token");
    // An OAuth session's token rotates only at the token endpoint, which keeps the spent token
    // for reuse detection; /refresh would hand out a new pair without that record.
    if (record.oauthSessionId !== undefined) {
      throw unknownToken("OAuth refresh tokens are refreshed at the token endpoint");
    }
    const { userId, deviceId } = record;
    const { tokens, issued } = this.tokensFor(userId, deviceId, true);
    await this.store.issueTokens(userId, deviceId, (current) => {
      // The check runs inside the device's optimistic commit: only one refresh wins.
      if (!current || current.refreshTokenHash !== oldHash) {
        throw unknownToken("Refresh token already used");
      }
      return current;
    }, tokens);
    return issued;
  }

  /** Log out one session: its device and tokens are deleted. */
  async logout(session: Session): Promise<void> {
    await this.deleteDevices(session.userId, [session.deviceId]);
  }

  /** Log out every device of a user. */
  async logoutAll(userId: string): Promise<void> {
    const devices = await this.store.listDevices(userId);
    await this.deleteDevices(userId, devices.map((d) => d.deviceId));
  }

  /**
   * Called after devices are deleted (logout, device deletion, deactivation), so other areas
   * drop what belongs to them (device keys, to-device inboxes) and announce the change. Each
   * hook must be idempotent: a crash between the account commit and a hook leaves the cleanup
   * to be redone, and readers treat records of unknown devices as absent meanwhile.
   */
  readonly devicesRemovedHooks: ((userId: string, deviceIds: string[]) => Promise<void>)[] = [];

  /**
   * Run before any login issues a device (after the credentials were checked); a check that
   * throws refuses the login and nothing is written. Administrators' account locks use it.
   */
  readonly loginChecks: ((userId: string) => Promise<void>)[] = [];

  /** Called after a device's display name changed (key queries show it). */
  readonly deviceRenamedHooks: ((userId: string, deviceId: string) => Promise<void>)[] = [];

  /**
   * Called after a login or registration created a new device (not one logged in again), so
   * the user's device list is announced as changed (clients list devices, as in Synapse).
   */
  readonly deviceAddedHooks: ((userId: string, deviceId: string) => Promise<void>)[] = [];

  /** Delete devices and revoke their tokens at once (in every process), then run the hooks. */
  async deleteDevices(userId: string, deviceIds: string[]): Promise<void> {
    await this.store.deleteDevices(userId, deviceIds);
    await this.#devicesRemoved(userId, deviceIds);
  }

  /** Run the device removal hooks (each idempotent; failures logged). */
  async #devicesRemoved(userId: string, deviceIds: string[]): Promise<void> {
    if (deviceIds.length === 0) return;
    for (const hook of this.devicesRemovedHooks) {
      try {
        await hook(userId, deviceIds);
      } catch (error) {
        console.error("device removal hook failed", userId, deviceIds, error);
      }
    }
  }

  /** Set a new password; with `logoutDevices`, every device but `keepDeviceId` is logged out. */
  async changePassword(
    userId: string,
    newPassword: string,
    logoutDevices: boolean,
    keepDeviceId?: string,
  ): Promise<void> {
    const account = await this.activeAccount(userId);
    account.passwordHash = await this.hasher.hash(checkPassword(newPassword));
    await this.store.putAccount(account);
    if (logoutDevices) {
      const devices = await this.store.listDevices(userId);
      await this.deleteDevices(
        userId,
        devices.map((d) => d.deviceId).filter((id) => id !== keepDeviceId),
      );
    }
    for (const hook of this.passwordChangedHooks) {
      try {
        await hook(userId, { logoutDevices });
      } catch (error) {
        console.error("password change hook failed", userId, error);
      }
    }
  }

  /**
   * Called after a password change (or reset), so sign-ins held elsewhere end with the devices
   * when `logoutDevices` (the browser sessions of the sign-in pages: a changed password usually
   * means the old one leaked, and a browser session could consent to new grants).
   */
  readonly passwordChangedHooks: ((
    userId: string,
    options: { logoutDevices: boolean },
  ) => Promise<void>)[] = [];

  /** The user's devices. */
  listDevices(userId: string): Promise<DeviceRecord[]> {
    return this.store.listDevices(userId);
  }

  /** One device, or null. */
  getDevice(userId: string, deviceId: string): Promise<DeviceRecord | null> {
    return this.store.getDevice(userId, deviceId);
  }

  /** The user's dehydrated device (MSC3814), or null. */
  dehydratedDevice(userId: string): Promise<DehydratedDeviceRecord | null> {
    return this.store.getDehydratedDevice(userId);
  }

  /**
   * Create the user's dehydrated device: a device record without tokens that no login can take
   * over, holding the client's `deviceData`. See AccountStore.createDehydratedDevice for the
   * outcomes; the caller deletes a previous dehydrated device first.
   */
  createDehydratedDevice(
    userId: string,
    deviceId: string,
    displayName: string | undefined,
    deviceData: JsonObject,
  ): Promise<DehydratedDeviceCreation> {
    const device = this.deviceRecord(userId, checkDeviceId(deviceId), displayName);
    return this.store.createDehydratedDevice(device, deviceData);
  }

  /** Rename a device, then run the rename hooks; false when there is no such device. */
  async renameDevice(userId: string, deviceId: string, displayName: string): Promise<boolean> {
    const renamed = await this.store.updateDevice(userId, deviceId, (d) => ({ ...d, displayName }));
    if (!renamed) return false;
    for (const hook of this.deviceRenamedHooks) {
      try {
        await hook(userId, deviceId);
      } catch (error) {
        console.error("device rename hook failed", userId, deviceId, error);
      }
    }
    return true;
  }

  /**
   * Record that a device was used now, from `ip` with `userAgent` (devices list, whois). At most
   * one write per device per DEVICE_ACTIVITY_INTERVAL_MS in this process: the time this process
   * last wrote is all it remembers, so another process writing too costs a write, never a wrong
   * answer. Failures are logged, never surfaced: activity is bookkeeping, not the request.
   */
  async noteActivity(
    session: Session,
    ip: string | undefined,
    userAgent: string | undefined,
  ): Promise<void> {
    const key = `${session.userId}|${session.deviceId}`;
    const now = this.now();
    const last = this.activityWritten.get(key);
    if (last !== undefined && now - last < DEVICE_ACTIVITY_INTERVAL_MS) return;
    if (this.activityWritten.size >= 10_000) this.activityWritten.clear();
    this.activityWritten.set(key, now);
    try {
      await this.store.updateDevice(session.userId, session.deviceId, (device) => ({
        ...device,
        lastSeenTs: now,
        ...(ip !== undefined ? { lastSeenIp: ip } : {}),
        ...(userAgent !== undefined ? { lastSeenUserAgent: userAgent.slice(0, 512) } : {}),
      }));
    } catch (error) {
      console.error("recording device activity failed", session.userId, error);
    }
  }

  /** The user ID a login identifier names: a full local user ID or a bare localpart. */
  userIdForLogin(user: string): string {
    if (user.startsWith("@")) {
      const parsed = parseUserId(user);
      if (!parsed.ok || parsed.value.serverName !== this.serverName) {
        throw forbiddenLogin("Invalid username or password");
      }
      return `@${parsed.value.localpart.toLowerCase()}:${this.serverName}`;
    }
    const userId = `@${user.toLowerCase()}:${this.serverName}`;
    // No such account can exist (IDs are 255 bytes at most), and a longer name would not even
    // fit a KV key: the same answer as a wrong password.
    if (new TextEncoder().encode(userId).byteLength > MAX_ID_BYTES) {
      throw forbiddenLogin("Invalid username or password");
    }
    return userId;
  }

  private userIdForRegistration(localpart: string): string {
    const checked = checkRegistrationLocalpart(localpart, this.serverName);
    if (!checked.ok) throw new MatrixError("M_INVALID_USERNAME", 400, checked.reason);
    return `@${localpart}:${this.serverName}`;
  }

  private async activeAccount(userId: string): Promise<AccountRecord> {
    const account = await this.store.getAccount(userId);
    if (!account) throw forbidden("No such account");
    if (account.deactivated) {
      throw new MatrixError("M_USER_DEACTIVATED", 403, "This account has been deactivated");
    }
    return account;
  }

  private async login(userId: string, options: DeviceOptions): Promise<IssuedSession> {
    for (const check of this.loginChecks) await check(userId);
    const deviceId = options.deviceId === undefined
      ? newDeviceId()
      : checkDeviceId(options.deviceId);
    const { tokens, issued } = this.tokensFor(userId, deviceId, options.refreshToken);
    // Logging in again with a known device ID replaces that device's tokens (spec). An OAuth
    // session's device stops being that session: its old codes and spent refresh tokens must
    // not end this login, nor its client revoke it.
    await this.#issueToDevice(userId, deviceId, tokens, (current) => {
      if (!current) return this.deviceRecord(userId, deviceId, options.displayName);
      const { oauthClientId: _c, oauthSessionId: _s, oauthScope: _scope, ...device } = current;
      return {
        ...device,
        ...(options.displayName !== undefined && { displayName: options.displayName }),
      };
    });
    return issued;
  }

  /**
   * Make `tokens` the device's only tokens, its record made by `device` from the current one
   * (null for a new device, which the device-added hooks then hear of). Shared by password and
   * token logins and OAuth sessions, so none of them can bind a dehydrated device.
   */
  async #issueToDevice(
    userId: string,
    deviceId: string,
    tokens: IssuedTokens,
    device: (current: DeviceRecord | null) => DeviceRecord,
  ): Promise<void> {
    let added = false;
    await this.store.issueTokens(userId, deviceId, (current) => {
      // A dehydrated device is only ever read by the device that rehydrates it; logging in
      // as it would hand its inbox and keys to a session (checked inside the commit loop).
      if (current?.dehydrated) {
        throw new MatrixError(
          "M_INVALID_PARAM",
          400,
          "That device ID belongs to the user's dehydrated device",
        );
      }
      added = !current;
      return device(current);
    }, tokens);
    if (added) await this.#deviceAdded(userId, deviceId);
  }

  /** Run the device-added hooks; the device exists whatever they do, so failures are logged. */
  async #deviceAdded(userId: string, deviceId: string): Promise<void> {
    for (const hook of this.deviceAddedHooks) {
      try {
        await hook(userId, deviceId);
      } catch (error) {
        console.error("device added hook failed", userId, deviceId, error);
      }
    }
  }

  private newDevice(userId: string, options: DeviceOptions) {
    const deviceId = options.deviceId === undefined
      ? newDeviceId()
      : checkDeviceId(options.deviceId);
    const device = this.deviceRecord(userId, deviceId, options.displayName);
    const { tokens, issued } = this.tokensFor(userId, deviceId, options.refreshToken);
    device.accessTokenHash = tokens.accessHash;
    if (tokens.refreshHash) device.refreshTokenHash = tokens.refreshHash;
    return { device, tokens, issued };
  }

  private deviceRecord(userId: string, deviceId: string, displayName?: string): DeviceRecord {
    const device: DeviceRecord = { userId, deviceId, createdAt: this.now() };
    if (displayName !== undefined) device.displayName = displayName;
    return device;
  }

  private tokensFor(userId: string, deviceId: string, refreshable?: boolean) {
    const accessToken = newToken("access");
    const access: AccessTokenRecord = { userId, deviceId, tokenId: randomId(12) };
    const issued: IssuedSession = { userId, deviceId, accessToken };
    const tokens: IssuedTokens = { accessHash: tokenHash(accessToken), access };
    if (refreshable) {
      const refreshToken = newToken("refresh");
      access.expiresAt = this.now() + REFRESHABLE_TOKEN_LIFETIME_MS;
      tokens.refreshHash = tokenHash(refreshToken);
      issued.refreshToken = refreshToken;
      issued.expiresInMs = REFRESHABLE_TOKEN_LIFETIME_MS;
    }
    return { tokens, issued };
  }
}

function checkPassword(password: string): string {
  if (password.length === 0) throw new MatrixError("M_WEAK_PASSWORD", 400, "Password is empty");
  if (password.length > MAX_PASSWORD_LENGTH) {
    throw new MatrixError(
      "M_INVALID_PARAM",
      400,
      `Password is over ${MAX_PASSWORD_LENGTH} characters`,
    );
  }
  return password;
}

function checkDeviceId(deviceId: string): string {
  const parsed = parseDeviceId(deviceId);
  if (!parsed.ok) throw new MatrixError("M_INVALID_PARAM", 400, parsed.reason);
  return deviceId;
}

const userInUse = () => new MatrixError("M_USER_IN_USE", 400, "That user ID is already taken");
const forbiddenLogin = (message: string) => new MatrixError("M_FORBIDDEN", 403, message);
const unknownToken = (message: string) =>
  new MatrixError("M_UNKNOWN_TOKEN", 401, message, { soft_logout: false });
