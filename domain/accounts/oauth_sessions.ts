/**
 * The account side of OAuth 2.0 sessions (domain/oauth/oauth_grants.ts holds the protocol): an
 * OAuth session is a Matrix device that carries the client it was granted to and a random
 * session ID per grant, and whose tokens are marked `oauth`. Its refresh tokens rotate only
 * through the token endpoint, and each spent one is kept (by hash, 30 days) so presenting it
 * again is recognised as reuse. Ending a session deletes the device, which drops its tokens in
 * every process at once.
 */
import type {
  AccountStore,
  DeviceRecord,
  IssuedTokens,
  SpentRefreshRecord,
} from "../ports/account_store.ts";
import type { IssuedSession } from "./account_service.ts";
import { tokenHash } from "./tokens.ts";

/** Spent refresh tokens are remembered this long (reuse after that is just an unknown token). */
export const SPENT_REFRESH_LIFETIME_MS = 30 * 24 * 3600_000;

/** What an OAuth session is started with. */
export interface OAuthSessionStart {
  userId: string;
  deviceId: string;
  clientId: string;
  /** Random, one per grant. */
  sessionId: string;
  /** The scope granted (stored on the device for userinfo and the account page). */
  scope: string;
  /** A new device's display name (the client's name). */
  displayName?: string;
}

/** Identifies one OAuth session: what ending it deletes. */
export interface OAuthSessionRef {
  userId: string;
  deviceId: string;
  oauthSessionId: string;
}

/** What presenting a refresh token at the token endpoint came to. */
export type OAuthRefreshOutcome =
  | { outcome: "rotated"; issued: IssuedSession; scope: string; session: OAuthSessionRef }
  /** A spent token presented again: the session it belonged to has been ended. */
  | { outcome: "reused"; session: OAuthSessionRef }
  | { outcome: "invalid"; reason: string };

/** What OAuth sessions are built on: the account store and the account service's devices. */
export interface OAuthSessionDeps {
  store: AccountStore;
  now: () => number;
  /** Throws unless the account exists and is active, and every login check passes (locks). */
  checkCanLogIn(userId: string): Promise<void>;
  /** Fresh refreshable tokens for a device, nothing written. */
  prepareTokens(userId: string, deviceId: string): { tokens: IssuedTokens; issued: IssuedSession };
  /** A new device record (nothing written). */
  deviceRecord(userId: string, deviceId: string, displayName?: string): DeviceRecord;
  /** Throws M_INVALID_PARAM unless `deviceId` is a valid device ID. */
  checkDeviceId(deviceId: string): string;
  /** Run the device removal hooks for devices the store deleted. */
  devicesRemoved(userId: string, deviceIds: string[]): Promise<void>;
  /**
   * Make `tokens` the device's only tokens, its record made by `device` from the current one
   * (null: a new device, then announced); refuses a dehydrated device (AccountService's login
   * path, so OAuth sessions bind devices exactly as logins do).
   */
  issueToDevice(
    userId: string,
    deviceId: string,
    tokens: IssuedTokens,
    device: (current: DeviceRecord | null) => DeviceRecord,
  ): Promise<void>;
}

/** OAuth session use cases; `accounts.oauthSessions`. */
export class OAuthSessions {
  /** Over the store and the account service's device handling. */
  constructor(private readonly deps: OAuthSessionDeps) {}

  /**
   * Create the session's device, or bind an existing device of the user with that ID (its
   * previous tokens are replaced, as a login with a known device ID does), and issue it an
   * expiring access token and a refresh token, both marked as the OAuth session's.
   */
  async start(start: OAuthSessionStart): Promise<IssuedSession> {
    const { userId, clientId, sessionId, scope } = start;
    const deviceId = this.deps.checkDeviceId(start.deviceId);
    await this.deps.checkCanLogIn(userId);
    const { tokens, issued } = this.deps.prepareTokens(userId, deviceId);
    tokens.access.oauth = true;
    tokens.oauthSessionId = sessionId;
    await this.deps.issueToDevice(userId, deviceId, tokens, (current) => {
      const device = current ?? this.deps.deviceRecord(userId, deviceId, start.displayName);
      return { ...device, oauthClientId: clientId, oauthSessionId: sessionId, oauthScope: scope };
    });
    return issued;
  }

  /**
   * Rotate a refresh token presented by `clientId`: new access and refresh tokens, the spent
   * one kept. A spent token presented again ends its session (if the device still belongs to
   * that session: a later grant may have rebound the device ID). Tokens of legacy logins, of
   * another client or of an ended session are `invalid`.
   */
  async rotate(refreshToken: string, clientId: string): Promise<OAuthRefreshOutcome> {
    const hash = tokenHash(refreshToken);
    const record = await this.deps.store.getRefreshToken(hash);
    if (!record) return await this.#spent(hash);
    const { userId, deviceId, oauthSessionId } = record;
    if (oauthSessionId === undefined) {
      return { outcome: "invalid", reason: "Not a refresh token of an OAuth session" };
    }
    const device = await this.deps.store.getDevice(userId, deviceId);
    if (!device || device.oauthSessionId !== oauthSessionId) {
      return { outcome: "invalid", reason: "The session has ended" };
    }
    if (device.oauthClientId !== clientId) {
      return { outcome: "invalid", reason: "The refresh token was issued to another client" };
    }
    const { tokens, issued } = this.deps.prepareTokens(userId, deviceId);
    tokens.access.oauth = true;
    tokens.oauthSessionId = oauthSessionId;
    const spent: SpentRefreshRecord = {
      userId,
      deviceId,
      oauthSessionId,
      clientId,
      expiresAt: this.deps.now() + SPENT_REFRESH_LIFETIME_MS,
    };
    const session = { userId, deviceId, oauthSessionId };
    if (await this.deps.store.rotateOAuthTokens(userId, deviceId, hash, spent, tokens)) {
      return { outcome: "rotated", issued, scope: device.oauthScope ?? "", session };
    }
    // Another rotation of this very token won the commit: this presentation is a reuse.
    return await this.#spent(hash);
  }

  /**
   * End one OAuth session: its device is deleted (tokens with it) unless the device ID has
   * since been bound to another session. True when a device was deleted.
   */
  async end(session: OAuthSessionRef): Promise<boolean> {
    const { userId, deviceId, oauthSessionId } = session;
    // The session check is inside the delete's commit: a grant rebinding the device ID in
    // between is never ended by the old session's replayed code or token.
    if (!(await this.deps.store.deleteOAuthDevice(userId, deviceId, oauthSessionId))) {
      return false;
    }
    await this.deps.devicesRemoved(userId, [deviceId]);
    return true;
  }

  /** The OAuth session an access or refresh token belongs to, with its client; null if none. */
  async sessionOfToken(
    token: string,
  ): Promise<{ session: OAuthSessionRef; clientId: string; scope: string } | null> {
    const hash = tokenHash(token);
    const access = await this.deps.store.getAccessToken(hash);
    const owner = access ?? await this.deps.store.getRefreshToken(hash);
    if (!owner) return null;
    const device = await this.deps.store.getDevice(owner.userId, owner.deviceId);
    if (!device?.oauthSessionId || device.oauthClientId === undefined) return null;
    // The token must be the device's current one: a stale index entry names nothing.
    if (device.accessTokenHash !== hash && device.refreshTokenHash !== hash) return null;
    return {
      session: {
        userId: device.userId,
        deviceId: device.deviceId,
        oauthSessionId: device.oauthSessionId,
      },
      clientId: device.oauthClientId,
      scope: device.oauthScope ?? "",
    };
  }

  async #spent(hash: string): Promise<OAuthRefreshOutcome> {
    const spent = await this.deps.store.getSpentRefresh(hash);
    if (!spent) return { outcome: "invalid", reason: "Unknown refresh token" };
    const session = {
      userId: spent.userId,
      deviceId: spent.deviceId,
      oauthSessionId: spent.oauthSessionId,
    };
    await this.end(session);
    return { outcome: "reused", session };
  }
}
