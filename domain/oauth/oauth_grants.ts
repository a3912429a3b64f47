/**
 * The grants of the authorization server: authorization codes (RFC 6749 §4.1 with PKCE),
 * refresh-token rotation with reuse detection, revocation (RFC 7009) and the device
 * authorization grant (RFC 8628). Every grant ends in an OAuth session: a Matrix device created
 * or bound through AccountService, so the rest of the server treats it like any login.
 */
import type { Config } from "../config.ts";
import type { AccountService } from "../accounts/account_service.ts";
import type { OAuthGrantStore } from "../ports/oauth_grant_store.ts";
import type {
  AuthorizationRequest,
  OAuthClient,
  PendingDeviceAuthorization,
  TokenResponse,
} from "./oauth_types.ts";
import type { IdTokenSigner } from "./id_tokens.ts";

/** Authorization codes live this long. */
export const CODE_LIFETIME_MS = 5 * 60_000;
/** Device authorizations (RFC 8628) live this long. */
export const DEVICE_GRANT_LIFETIME_MS = 15 * 60_000;
/** Seconds a device client waits between polls at first. */
export const DEVICE_POLL_INTERVAL_S = 5;

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

/** The grants; `deps.oauthGrants`. */
export class OAuthGrants {
  /** Build over its store and services; `now` is injectable for expiry tests. */
  constructor(private readonly options: OAuthGrantsOptions) {}

  /**
   * Mint an authorization code for a validated request the user consented to (part C's
   * consent page). `authTime`: when the user signed in (default now), for the ID token.
   */
  issueCode(
    _request: AuthorizationRequest,
    _userId: string,
    _options: { authTime?: number } = {},
  ): Promise<string> {
    throw new Error("OAuthGrants.issueCode: being implemented");
  }

  /** The authorization_code grant: PKCE, client and redirect URI checked; a replay ends the session. */
  exchangeCode(_input: {
    code: string;
    clientId: string;
    redirectUri: string;
    codeVerifier: string;
  }): Promise<TokenResponse> {
    throw new Error("OAuthGrants.exchangeCode: being implemented");
  }

  /** The refresh_token grant: rotation; a spent token presented again ends the session. */
  refresh(_input: { refreshToken: string; clientId: string }): Promise<TokenResponse> {
    throw new Error("OAuthGrants.refresh: being implemented");
  }

  /** RFC 7009: either token ends its session; unknown tokens are fine; another client's refused. */
  revoke(_input: { token: string; clientId: string; tokenTypeHint?: string }): Promise<void> {
    throw new Error("OAuthGrants.revoke: being implemented");
  }

  /** RFC 8628 §3.1: start a device authorization for a client and a scope string. */
  startDeviceAuthorization(
    _input: { clientId: string; scope: string },
  ): Promise<DeviceAuthorizationResponse> {
    throw new Error("OAuthGrants.startDeviceAuthorization: being implemented");
  }

  /**
   * RFC 8628 §3.4: the device_code grant. Throws OAuthError authorization_pending, slow_down,
   * access_denied, expired_token or invalid_grant; issues the tokens once after approval.
   */
  pollDeviceCode(_input: { deviceCode: string; clientId: string }): Promise<TokenResponse> {
    throw new Error("OAuthGrants.pollDeviceCode: being implemented");
  }

  /** The device authorization a user code names (any case, dash optional), or null. */
  deviceAuthorization(_userCode: string): Promise<PendingDeviceAuthorization | null> {
    throw new Error("OAuthGrants.deviceAuthorization: being implemented");
  }

  /** The user approved the device authorization; false when unknown, expired or not pending. */
  approveDevice(_userCode: string, _userId: string): Promise<boolean> {
    throw new Error("OAuthGrants.approveDevice: being implemented");
  }

  /** The user denied it; false when unknown, expired or not pending. */
  denyDevice(_userCode: string): Promise<boolean> {
    throw new Error("OAuthGrants.denyDevice: being implemented");
  }
}
