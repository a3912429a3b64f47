/**
 * The upstream OpenID Connect provider, as a relying party on oauth4webapi: discovery, the
 * authorization URL (PKCE S256, state, nonce), the callback's checks, the code exchange, the ID
 * token's claims (issuer, audience, expiry, nonce; received straight from the token endpoint, so
 * TLS stands in for its signature as OpenID Connect Core §3.1.3.7 allows) and userinfo.
 *
 * Every request goes through GuardedFetch: the provider's addresses must be public unless
 * `TESSERA_OIDC_ALLOW_PRIVATE=true`, time and size are bounded, redirects are not followed.
 * A plain-http issuer is accepted only with that setting too (a test or a private network).
 *
 * The discovery document is the one thing kept in memory: it is the provider's, never changed
 * by this server, and refetched after an hour.
 */
import * as oauth from "oauth4webapi";
import type { UpstreamOidcConfig } from "../domain/config.ts";
import {
  type UpstreamAuthorization,
  type UpstreamIdentity,
  type UpstreamOidc,
  UpstreamOidcError,
} from "../domain/ports/upstream_oidc.ts";
import { OutboundError } from "../domain/ports/outbound_http.ts";
import { GuardedFetch } from "./guarded_fetch.ts";

/** How long a discovery document is used before it is fetched again. */
const DISCOVERY_TTL_MS = 60 * 60_000;

/** Statuses whose responses carry no body (the Response constructor refuses one). */
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

/** Options of the adapter beyond the provider's configuration. */
export interface UpstreamOidcClientOptions {
  /** The fetch GuardedFetch sends with (tests); default the global fetch. */
  fetch?: typeof fetch;
  now?: () => number;
}

/** An UpstreamOidc for one configured provider. */
export class UpstreamOidcClient implements UpstreamOidc {
  readonly #config: UpstreamOidcConfig;
  readonly #guard: GuardedFetch;
  readonly #client: oauth.Client;
  readonly #auth: oauth.ClientAuth;
  readonly #now: () => number;
  #discovered?: { as: oauth.AuthorizationServer; fetchedAt: number };

  /** For the provider `config` (`TESSERA_OIDC_*`). */
  constructor(config: UpstreamOidcConfig, options: UpstreamOidcClientOptions = {}) {
    this.#config = config;
    this.#guard = new GuardedFetch({
      allowPrivate: config.allowPrivate,
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });
    this.#client = { client_id: config.clientId };
    // A confidential client authenticates with its secret (client_secret_basic, every
    // provider's default); a public one relies on PKCE alone.
    this.#auth = config.clientSecret === undefined
      ? oauth.None()
      : oauth.ClientSecretBasic(config.clientSecret);
    this.#now = options.now ?? Date.now;
  }

  /** See UpstreamOidc.beginAuthorization. */
  async beginAuthorization(redirectUri: string): Promise<UpstreamAuthorization> {
    const as = await this.#metadata();
    if (as.authorization_endpoint === undefined) {
      throw new UpstreamOidcError("invalid", "the provider has no authorization endpoint");
    }
    const state = oauth.generateRandomState();
    const nonce = oauth.generateRandomNonce();
    const codeVerifier = oauth.generateRandomCodeVerifier();
    const url = new URL(as.authorization_endpoint);
    url.searchParams.set("client_id", this.#config.clientId);
    url.searchParams.set("redirect_uri", redirectUri);
    url.searchParams.set("response_type", "code");
    url.searchParams.set("scope", this.#config.scopes);
    url.searchParams.set("state", state);
    url.searchParams.set("nonce", nonce);
    url.searchParams.set("code_challenge", await oauth.calculatePKCECodeChallenge(codeVerifier));
    url.searchParams.set("code_challenge_method", "S256");
    return { url: url.href, state, nonce, codeVerifier };
  }

  /** See UpstreamOidc.completeAuthorization. */
  async completeAuthorization(request: {
    callbackParams: URLSearchParams;
    redirectUri: string;
    state: string;
    nonce: string;
    codeVerifier: string;
  }): Promise<UpstreamIdentity> {
    const as = await this.#metadata();
    try {
      // State, the provider's `iss` (RFC 9207, when it says it sends one) and error answers.
      const params = oauth.validateAuthResponse(
        as,
        this.#client,
        request.callbackParams,
        request.state,
      );
      const response = await oauth.authorizationCodeGrantRequest(
        as,
        this.#client,
        this.#auth,
        params,
        request.redirectUri,
        request.codeVerifier,
        this.#requestOptions(),
      );
      const tokens = await oauth.processAuthorizationCodeResponse(as, this.#client, response, {
        expectedNonce: request.nonce,
        requireIdToken: true,
      });
      const idToken = oauth.getValidatedIdTokenClaims(tokens);
      if (idToken === undefined) throw new UpstreamOidcError("invalid", "no ID token");
      const claims: Record<string, unknown> = { ...idToken };
      if (as.userinfo_endpoint !== undefined) {
        // Providers put profile claims in userinfo rather than the ID token by default; the ID
        // token's claims win where both have one, and `sub` must agree (checked here).
        const info = await oauth.processUserInfoResponse(
          as,
          this.#client,
          idToken.sub,
          await oauth.userInfoRequest(
            as,
            this.#client,
            tokens.access_token,
            this.#requestOptions(),
          ),
        );
        for (const [name, value] of Object.entries(info)) {
          if (!(name in claims)) claims[name] = value;
        }
      }
      return { issuer: idToken.iss, subject: idToken.sub, claims };
    } catch (error) {
      throw upstreamError(error);
    }
  }

  /** The provider's metadata, discovered (again after an hour). */
  async #metadata(): Promise<oauth.AuthorizationServer> {
    const cached = this.#discovered;
    if (cached && this.#now() - cached.fetchedAt < DISCOVERY_TTL_MS) return cached.as;
    const issuer = new URL(this.#config.issuer);
    if (issuer.protocol !== "https:" && !this.#config.allowPrivate) {
      throw new UpstreamOidcError(
        "refused",
        "the provider's issuer must be https (http only with TESSERA_OIDC_ALLOW_PRIVATE)",
      );
    }
    let as: oauth.AuthorizationServer;
    try {
      const response = await oauth.discoveryRequest(issuer, this.#requestOptions());
      const copy = response.clone();
      try {
        as = await oauth.processDiscoveryResponse(issuer, response);
      } catch (error) {
        // TESSERA_OIDC_ISSUER loses a trailing slash in parsing; an issuer with a path and a
        // trailing slash ("https://idp.example/realms/x/") is still that issuer.
        const claimed = (error as { cause?: { body?: { issuer?: unknown } } }).cause?.body?.issuer;
        if (typeof claimed !== "string" || claimed !== `${this.#config.issuer}/`) throw error;
        as = await oauth.processDiscoveryResponse(new URL(claimed), copy);
      }
    } catch (error) {
      throw upstreamError(error, "discovery failed");
    }
    this.#discovered = { as, fetchedAt: this.#now() };
    return as;
  }

  /** oauth4webapi's request options: the guarded fetch, and http for a private provider. */
  #requestOptions(): oauth.HttpRequestOptions<"GET" | "POST", URLSearchParams | undefined> {
    return {
      [oauth.customFetch]: (url, init) => this.#fetch(url, init),
      // Deprecated in oauth4webapi but the one switch for a plain-http issuer (tests, private
      // networks); the address guard still applies.
      [oauth.allowInsecureRequests]: this.#config.allowPrivate,
    };
  }

  async #fetch(
    url: string,
    init: { method: string; headers: Record<string, string>; body?: unknown },
  ): Promise<Response> {
    const method = init.method === "POST" ? "POST" : "GET";
    const body = init.body === undefined || init.body === null ? undefined : String(init.body);
    const answer = await this.#guard.request(url, {
      method,
      headers: init.headers,
      ...(body !== undefined ? { body } : {}),
    });
    return new Response(NULL_BODY_STATUSES.has(answer.status) ? null : answer.text, {
      status: answer.status,
      headers: answer.headers,
    });
  }
}

/** Any failure of the exchange as an UpstreamOidcError. */
function upstreamError(error: unknown, context?: string): UpstreamOidcError {
  if (error instanceof UpstreamOidcError) return error;
  const prefix = context === undefined ? "" : `${context}: `;
  if (error instanceof oauth.AuthorizationResponseError) {
    const description = error.error_description ? ` (${error.error_description})` : "";
    return new UpstreamOidcError("denied", `${prefix}${error.error}${description}`);
  }
  if (error instanceof oauth.ResponseBodyError) {
    const description = error.error_description ? ` (${error.error_description})` : "";
    return new UpstreamOidcError("invalid", `${prefix}${error.error}${description}`);
  }
  // The guard's refusal or a network failure reaches here wrapped in oauth4webapi's error or as is.
  const cause = error instanceof OutboundError
    ? error
    : (error as { cause?: unknown })?.cause instanceof OutboundError
    ? (error as { cause: OutboundError }).cause
    : undefined;
  if (cause !== undefined) {
    return new UpstreamOidcError(
      cause.failure === "refused" ? "refused" : "unreachable",
      `${prefix}${cause.message}`,
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new UpstreamOidcError("invalid", `${prefix}${message}`);
}
