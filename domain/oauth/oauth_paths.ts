/**
 * Where the OAuth 2.0 authorization server and its pages live, relative to the issuer (the
 * public base URL). One list, so the metadata document, the routes and the pages agree.
 */

import type { Config } from "../config.ts";
import { clientBaseUrl } from "../discovery.ts";

/**
 * The issuer identifier: the public base URL with a trailing slash (`TESSERA_PUBLIC_BASEURL`,
 * else derived from the server name). Every endpoint URL is built from it, so set the base URL
 * when the server sits behind a proxy.
 */
export function oauthIssuer(config: Config): string {
  return `${clientBaseUrl(config)}/`;
}

/** An absolute URL of one of the paths below. */
export function oauthUrl(config: Config, path: string): string {
  return `${clientBaseUrl(config)}${path}`;
}

/** Paths of the protocol endpoints (JSON or form bodies, no cookies). */
export const OAUTH_ENDPOINTS = Object.freeze({
  /** The Matrix discovery document (spec: GET /_matrix/client/v1/auth_metadata). */
  authMetadata: "/_matrix/client/v1/auth_metadata",
  /** MSC2965's unstable paths, which matrix-js-sdk before v38 asks for. */
  unstableAuthMetadata: "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
  unstableAuthIssuer: "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer",
  /** OpenID Connect discovery and RFC 8414 at the issuer. */
  openidConfiguration: "/.well-known/openid-configuration",
  oauthAuthorizationServer: "/.well-known/oauth-authorization-server",
  /** RFC 7591 dynamic client registration. */
  registration: "/oauth2/register",
  /** The authorization endpoint (a browser navigation: answers with redirects and pages). */
  authorization: "/oauth2/authorize",
  token: "/oauth2/token",
  /** RFC 7009. */
  revocation: "/oauth2/revoke",
  /** RFC 8628. */
  deviceAuthorization: "/oauth2/device_authorization",
  /** The public keys that sign ID tokens. */
  jwks: "/oauth2/keys.json",
  userinfo: "/oauth2/userinfo",
});

/** Paths of the HTML pages (browser session cookie, CSRF-protected forms). */
export const OAUTH_PAGES = Object.freeze({
  /** Password sign-in (and the upstream provider's button). `?next=` a local path. */
  login: "/account/login",
  /** Account registration, when registration is open or by token. `?next=` as for login. */
  register: "/account/register",
  /** Ends the browser session. */
  logout: "/account/logout",
  /** Consent to one pending authorization request: `/account/consent/<requestId>`. */
  consent: "/account/consent",
  /** RFC 8628 user code entry (`verification_uri`), `?code=` prefilled (`..._complete`). */
  link: "/account/link",
  /** Account management (`account_management_uri`); `?action=` per MSC4191. */
  account: "/account",
});

/** Paths of the upstream provider sign-in and the legacy SSO flow. */
export const UPSTREAM_PATHS = Object.freeze({
  /** `/upstream/<providerId>/start?next=<local path>`: redirect to the provider. */
  start: (providerId: string) => `/upstream/${encodeURIComponent(providerId)}/start`,
  /** `/upstream/<providerId>/callback`: the provider's redirect back (registered there). */
  callback: (providerId: string) => `/upstream/${encodeURIComponent(providerId)}/callback`,
});
