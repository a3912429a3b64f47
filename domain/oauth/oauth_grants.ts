/**
 * The grants of the authorization server: authorization codes (RFC 6749 §4.1 with PKCE),
 * refresh-token rotation with reuse detection, revocation (RFC 7009) and the device
 * authorization grant (RFC 8628). Every grant ends in an OAuth session: a Matrix device created
 * or bound through AccountService (`accounts.oauthSessions`), so the rest of the server treats
 * it like any login, and ending a session is deleting that device.
 */
import type { Config } from "../config.ts";
import { MatrixError } from "../errors.ts";
import type { AccountService, IssuedSession } from "../accounts/account_service.ts";
import { newDeviceId, randomId, tokenHash } from "../accounts/tokens.ts";
import type { OAuthSessionRef } from "../accounts/oauth_sessions.ts";
import type { DeviceGrantRecord, OAuthGrantStore } from "../ports/oauth_grant_store.ts";
import type {
  AuthorizationRequest,
  MatrixScope,
  OAuthClient,
  PendingDeviceAuthorization,
  TokenResponse,
} from "./oauth_types.ts";
import { OAuthError } from "./oauth_errors.ts";
import type { IdTokenSigner } from "./id_tokens.ts";
import { OAUTH_PAGES, oauthUrl } from "./oauth_paths.ts";
import { pkceVerifies } from "./pkce.ts";
import { DEVICE_SCOPE_PREFIX, parseScope, UNSTABLE_DEVICE_SCOPE_PREFIX } from "./scopes.ts";

/** Authorization codes live this long. */
export const CODE_LIFETIME_MS = 5 * 60_000;
/**
 * An exchanged code's record lives this long: a replay within it ends the session the first
 * exchange created (RFC 6749 §4.1.2); later the code is merely unknown.
 */
export const SPENT_CODE_LIFETIME_MS = 24 * 3600_000;
/** Device authorizations (RFC 8628) live this long. */
export const DEVICE_GRANT_LIFETIME_MS = 15 * 60_000;
/** Seconds a device client waits between polls at first (RFC 8628 §3.2's default). */
export const DEVICE_POLL_INTERVAL_S = 5;
/** The grant type of RFC 8628. */
export const DEVICE_CODE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code";

/**
 * User code letters: RFC 8628 §6.1's base-20 consonants (no vowels, so no words; no letters that
 * look like digits). 20^8 codes, about 34 bits, guessed only through the rate-limited link page.
 */
const USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LENGTH = 8;

/** What the device authorization endpoint answers (RFC 8628 §3.2). */
export interface DeviceAuthorizationResponse {
  device_code: string;
  /** Shown as XXXX-XXXX. */
  user_code: string;
  verification_uri: string;
  verification_uri_complete: string;
  /** Seconds. */
  expires_in: number;
  /** Seconds. */
  interval: number;
}

/** The clients OAuthGrants needs: OAuthClientRegistry (domain/oauth/client_registry.ts). */
export interface ClientLookup {
  get(clientId: string): Promise<OAuthClient | null>;
}

/** Construction options of OAuthGrants. */
export interface OAuthGrantsOptions {
  store: OAuthGrantStore;
  accounts: AccountService;
  clients: ClientLookup;
  idTokens: IdTokenSigner;
  config: Config;
  now?: () => number;
}

/** A user code as stored: upper case, letters only (users type `abcd-efgh` or `ABCDEFGH`). */
export function normaliseUserCode(userCode: string): string {
  return userCode.toUpperCase().replace(/[\s-]/g, "");
}

/** A stored user code as shown: XXXX-XXXX. */
export function displayUserCode(userCode: string): string {
  return `${userCode.slice(0, 4)}-${userCode.slice(4)}`;
}

type DevicePollVerdict =
  | "pending"
  | "slow_down"
  | "denied"
  | "approved"
  | "expired"
  | "other_client";

/** The grants; `deps.oauthGrants`. */
export class OAuthGrants {
  readonly #store: OAuthGrantStore;
  readonly #accounts: AccountService;
  readonly #clients: ClientLookup;
  readonly #idTokens: IdTokenSigner;
  readonly #config: Config;
  readonly #now: () => number;

  /** Build over its store and services; `now` is injectable for expiry tests. */
  constructor(options: OAuthGrantsOptions) {
    this.#store = options.store;
    this.#accounts = options.accounts;
    this.#clients = options.clients;
    this.#idTokens = options.idTokens;
    this.#config = options.config;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Mint an authorization code for a validated request the user consented to (the consent
   * page, routes/oauth/authorization_routes.ts). `authTime`: when the user signed in (default
   * now), for the ID token. Returns the code (32 random bytes, base64url); only its hash is
   * stored.
   */
  async issueCode(
    request: AuthorizationRequest,
    userId: string,
    options: { authTime?: number } = {},
  ): Promise<string> {
    const code = randomId(32);
    const now = this.#now();
    await this.#store.putCode(tokenHash(code), {
      clientId: request.clientId,
      redirectUri: request.redirectUri,
      codeChallenge: request.codeChallenge,
      userId,
      scope: withDevice(request.scope),
      ...(request.nonce !== undefined && { nonce: request.nonce }),
      authTime: options.authTime ?? now,
      expiresAt: now + CODE_LIFETIME_MS,
    });
    return code;
  }

  /**
   * The authorization_code grant. The code is taken (deleted) before anything else is checked,
   * so a failed exchange burns it too. A code presented again is refused and the session its
   * first exchange created is ended (RFC 6749 §4.1.2), even when the replay races that exchange.
   */
  async exchangeCode(input: {
    code: string;
    clientId: string;
    redirectUri: string;
    codeVerifier: string;
  }): Promise<TokenResponse> {
    const client = await this.#client(input.clientId, "authorization_code");
    const hash = tokenHash(input.code);
    const now = this.#now();
    const record = await this.#store.takeCode(hash, now + SPENT_CODE_LIFETIME_MS);
    if (!record) {
      const spent = await this.#store.updateSpentCode(hash, (r) => ({ ...r, replayed: true }));
      if (spent?.session) await this.#accounts.oauthSessions.end(spent.session);
      throw invalidGrant(
        spent ? "The authorization code was already used" : "Unknown authorization code",
      );
    }
    if (record.expiresAt <= now) throw invalidGrant("The authorization code has expired");
    if (record.clientId !== client.clientId) {
      throw invalidGrant("The authorization code was issued to another client");
    }
    if (record.redirectUri !== input.redirectUri) {
      throw invalidGrant("redirect_uri differs from the authorization request's");
    }
    if (!pkceVerifies(input.codeVerifier, record.codeChallenge)) {
      throw invalidGrant("code_verifier does not match the code challenge (PKCE S256)");
    }
    const { issued, session } = await this.#startSession(client, record.userId, record.scope);
    const after = await this.#store.updateSpentCode(hash, (r) => ({ ...r, session }));
    if (!after || after.replayed) {
      // The code was replayed while this exchange ran: the session it made must not survive.
      await this.#accounts.oauthSessions.end(session);
      throw invalidGrant("The authorization code was already used");
    }
    return await this.#tokenResponse(issued, record.scope.scope, {
      openid: record.scope.openid,
      userId: record.userId,
      clientId: client.clientId,
      nonce: record.nonce,
      authTime: record.authTime,
    });
  }

  /**
   * The refresh_token grant: new access and refresh tokens, the presented one spent. A spent
   * token presented again ends the whole session (its newest tokens die with the device).
   */
  async refresh(input: { refreshToken: string; clientId: string }): Promise<TokenResponse> {
    const client = await this.#client(input.clientId, "refresh_token");
    const result = await this.#accounts.oauthSessions.rotate(input.refreshToken, client.clientId);
    if (result.outcome === "reused") {
      throw invalidGrant("The refresh token was already used: the session has been ended");
    }
    if (result.outcome === "invalid") throw invalidGrant(result.reason);
    return await this.#tokenResponse(result.issued, result.scope);
  }

  /**
   * RFC 7009: either token of a session ends it (the device goes, and both tokens with it).
   * Unknown, expired or already revoked tokens answer success, as §2.2 asks; a token of another
   * client is refused and nothing is revoked.
   */
  async revoke(input: { token: string; clientId: string; tokenTypeHint?: string }): Promise<void> {
    const client = await this.#client(input.clientId);
    // The hint only orders look-ups (§2.1); both kinds are looked up whatever it says.
    const found = await this.#accounts.oauthSessions.sessionOfToken(input.token);
    if (!found) return;
    if (found.clientId !== client.clientId) {
      throw new OAuthError("unauthorized_client", "The token was not issued to this client");
    }
    await this.#accounts.oauthSessions.end(found.session);
  }

  /**
   * RFC 8628 §3.1: start a device authorization for a client registered for the device grant,
   * with a scope string (parsed as for the authorization endpoint).
   */
  async startDeviceAuthorization(
    input: { clientId: string; scope: string },
  ): Promise<DeviceAuthorizationResponse> {
    const client = await this.#client(input.clientId, DEVICE_CODE_GRANT_TYPE);
    const scope = withDevice(parseScope(input.scope));
    const now = this.#now();
    const expiresAt = now + DEVICE_GRANT_LIFETIME_MS;
    const deviceCode = randomId(32);
    const deviceCodeHash = tokenHash(deviceCode);
    for (let attempt = 0; attempt < 10; attempt++) {
      const userCode = randomUserCode();
      const record: DeviceGrantRecord = {
        userCode,
        clientId: client.clientId,
        scope,
        status: "pending",
        interval: DEVICE_POLL_INTERVAL_S,
        expiresAt,
      };
      if (await this.#store.createDeviceGrant(deviceCodeHash, record)) {
        const verificationUri = oauthUrl(this.#config, OAUTH_PAGES.link);
        const shown = displayUserCode(userCode);
        return {
          device_code: deviceCode,
          user_code: shown,
          verification_uri: verificationUri,
          verification_uri_complete: `${verificationUri}?code=${encodeURIComponent(shown)}`,
          expires_in: Math.floor(DEVICE_GRANT_LIFETIME_MS / 1000),
          interval: DEVICE_POLL_INTERVAL_S,
        };
      }
    }
    throw new OAuthError("temporarily_unavailable", "No free user code; try again", 503);
  }

  /**
   * RFC 8628 §3.4-3.5: the device_code grant. Throws OAuthError authorization_pending (not
   * decided yet), slow_down (polled sooner than the interval, which then grows by 5 s),
   * access_denied (denied; the grant is gone), expired_token, or invalid_grant (unknown code,
   * or another client's); once approved, the tokens are issued exactly once.
   */
  async pollDeviceCode(input: { deviceCode: string; clientId: string }): Promise<TokenResponse> {
    const client = await this.#client(input.clientId, DEVICE_CODE_GRANT_TYPE);
    const hash = tokenHash(input.deviceCode);
    const now = this.#now();
    // Set inside the commit's update (which may run more than once); read after it.
    let verdict = "pending" as DevicePollVerdict;
    const record = await this.#store.updateDeviceGrant(hash, (current) => {
      if (current.clientId !== client.clientId) {
        verdict = "other_client";
        return null;
      }
      if (current.expiresAt <= now) {
        verdict = "expired";
        return "delete";
      }
      if (current.status === "denied") {
        verdict = "denied";
        return "delete";
      }
      if (current.status === "approved") {
        verdict = "approved";
        return "delete";
      }
      if (
        current.lastPolledAt !== undefined &&
        now - current.lastPolledAt < current.interval * 1000
      ) {
        verdict = "slow_down";
        return { ...current, lastPolledAt: now, interval: current.interval + 5 };
      }
      verdict = "pending";
      return { ...current, lastPolledAt: now };
    });
    if (!record) throw invalidGrant("Unknown or expired device code");
    switch (verdict) {
      case "other_client":
        throw invalidGrant("The device code was issued to another client");
      case "expired":
        throw new OAuthError("expired_token", "The device authorization has expired");
      case "denied":
        throw new OAuthError("access_denied", "The user denied the authorization");
      case "slow_down":
        throw new OAuthError(
          "slow_down",
          `Polling too fast: wait ${record.interval + 5} seconds between requests`,
        );
      case "pending":
        throw new OAuthError("authorization_pending", "The user has not decided yet");
    }
    // Approved, and this poll took the grant (deleted in its commit): issue the tokens once.
    if (record.userId === undefined) throw invalidGrant("The device authorization has no user");
    const { issued } = await this.#startSession(client, record.userId, record.scope);
    return await this.#tokenResponse(issued, record.scope.scope, {
      openid: record.scope.openid,
      userId: record.userId,
      clientId: client.clientId,
      authTime: record.authTime ?? now,
    });
  }

  /** The device authorization a user code names (any case, dash optional), or null. */
  async deviceAuthorization(userCode: string): Promise<PendingDeviceAuthorization | null> {
    const normalised = normaliseUserCode(userCode);
    if (!isUserCode(normalised)) return null;
    const hash = await this.#store.deviceCodeHashFor(normalised);
    if (!hash) return null;
    const record = await this.#store.getDeviceGrant(hash);
    if (!record) return null;
    return {
      userCode: displayUserCode(record.userCode),
      clientId: record.clientId,
      scope: record.scope,
      expiresAt: record.expiresAt,
      status: record.status,
    };
  }

  /** The user approved the device authorization; false when unknown, expired or not pending. */
  approveDevice(userCode: string, userId: string): Promise<boolean> {
    const now = this.#now();
    return this.#decide(userCode, { status: "approved", userId, authTime: now });
  }

  /** The user denied it; false when unknown, expired or not pending. */
  denyDevice(userCode: string): Promise<boolean> {
    return this.#decide(userCode, { status: "denied" });
  }

  async #decide(
    userCode: string,
    decision: Pick<DeviceGrantRecord, "status" | "userId" | "authTime">,
  ): Promise<boolean> {
    const normalised = normaliseUserCode(userCode);
    if (!isUserCode(normalised)) return false;
    const hash = await this.#store.deviceCodeHashFor(normalised);
    if (!hash) return false;
    const now = this.#now();
    let decided = false;
    await this.#store.updateDeviceGrant(hash, (current) => {
      decided = false;
      if (current.status !== "pending" || current.expiresAt <= now) return null;
      decided = true;
      return { ...current, ...decision };
    });
    return decided;
  }

  /** The public keys of the ID tokens (`jwks_uri`). */
  jwks(): ReturnType<IdTokenSigner["jwks"]> {
    return this.#idTokens.jwks();
  }

  /** The client, which must exist and, with `grantType`, have registered that grant type. */
  async #client(clientId: string, grantType?: string): Promise<OAuthClient> {
    const client = clientId === "" ? null : await this.#clients.get(clientId);
    if (!client) throw new OAuthError("invalid_client", "Unknown client_id", 401);
    if (grantType !== undefined && !client.grantTypes.includes(grantType)) {
      throw new OAuthError(
        "unauthorized_client",
        `The client did not register the ${grantType} grant type`,
      );
    }
    return client;
  }

  /** Create or bind the session's device; account refusals become `invalid_grant`. */
  async #startSession(
    client: OAuthClient,
    userId: string,
    scope: MatrixScope,
  ): Promise<{ issued: IssuedSession; session: OAuthSessionRef }> {
    const deviceId = scope.deviceId ?? newDeviceId();
    const oauthSessionId = randomId(16);
    try {
      const issued = await this.#accounts.oauthSessions.start({
        userId,
        deviceId,
        clientId: client.clientId,
        sessionId: oauthSessionId,
        scope: scope.scope,
        ...(client.clientName !== undefined && { displayName: client.clientName }),
      });
      return { issued, session: { userId, deviceId, oauthSessionId } };
    } catch (error) {
      // A deactivated or locked account, or a device ID that is the user's dehydrated device.
      if (error instanceof MatrixError) throw invalidGrant(error.message);
      throw error;
    }
  }

  async #tokenResponse(
    issued: IssuedSession,
    scope: string,
    idToken?: {
      openid: boolean;
      userId: string;
      clientId: string;
      nonce?: string;
      authTime: number;
    },
  ): Promise<TokenResponse> {
    if (issued.refreshToken === undefined || issued.expiresInMs === undefined) {
      throw new Error("OAuth sessions always get a refresh token and an expiring access token");
    }
    const response: TokenResponse = {
      access_token: issued.accessToken,
      token_type: "Bearer",
      expires_in: Math.floor(issued.expiresInMs / 1000),
      refresh_token: issued.refreshToken,
      scope,
    };
    if (idToken?.openid) {
      response.id_token = await this.#idTokens.sign({
        sub: idToken.userId,
        aud: idToken.clientId,
        ...(idToken.nonce !== undefined && { nonce: idToken.nonce }),
        authTime: idToken.authTime,
      });
    }
    return response;
  }
}

/** A scope with its device: parseScope always names one, but the type allows none. */
function withDevice(scope: MatrixScope): MatrixScope {
  if (scope.deviceId !== undefined) return scope;
  const deviceId = newDeviceId();
  const unstable = scope.scope.split(" ").some((t) => t.includes("org.matrix.msc2967"));
  const prefix = unstable ? UNSTABLE_DEVICE_SCOPE_PREFIX : DEVICE_SCOPE_PREFIX;
  return { ...scope, deviceId, scope: `${scope.scope} ${prefix}${deviceId}`.trim() };
}

function randomUserCode(): string {
  // 256 % 20 = 16: bytes from 240 up are skipped so every letter is equally likely.
  let out = "";
  while (out.length < USER_CODE_LENGTH) {
    for (const byte of crypto.getRandomValues(new Uint8Array(USER_CODE_LENGTH * 2))) {
      if (byte < 240 && out.length < USER_CODE_LENGTH) {
        out += USER_CODE_ALPHABET[byte % USER_CODE_ALPHABET.length];
      }
    }
  }
  return out;
}

function isUserCode(normalised: string): boolean {
  return normalised.length === USER_CODE_LENGTH &&
    [...normalised].every((ch) => USER_CODE_ALPHABET.includes(ch));
}

const invalidGrant = (description: string) => new OAuthError("invalid_grant", description);
