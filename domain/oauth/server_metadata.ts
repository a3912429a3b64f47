/**
 * The authorization server metadata (RFC 8414, OpenID Connect Discovery 1.0), served as the
 * Matrix `auth_metadata` and at the issuer's well-known paths. Every value says what this server
 * actually does, so clients (matrix-js-sdk checks the required ones) never try a feature that is
 * not there.
 */
import type { Config } from "../config.ts";
import type { JsonObject } from "../protocol/json.ts";
import { OAUTH_ENDPOINTS, OAUTH_PAGES, oauthIssuer, oauthUrl } from "./oauth_paths.ts";
import { SUPPORTED_GRANT_TYPES } from "./client_metadata.ts";
import {
  API_SCOPE,
  DEVICE_SCOPE_PREFIX,
  OPENID_SCOPE,
  UNSTABLE_API_SCOPE,
  UNSTABLE_DEVICE_SCOPE_PREFIX,
} from "./scopes.ts";

/** The account management actions of the spec (MSC4191) the account page serves. */
export const ACCOUNT_MANAGEMENT_ACTIONS: readonly string[] = Object.freeze([
  "org.matrix.profile",
  "org.matrix.devices_list",
  "org.matrix.device_view",
  "org.matrix.device_delete",
  "org.matrix.account_deactivate",
  "org.matrix.cross_signing_reset",
]);

/** The metadata document of this server's issuer. */
export function authServerMetadata(config: Config): JsonObject {
  const url = (path: string) => oauthUrl(config, path);
  return {
    issuer: oauthIssuer(config),
    authorization_endpoint: url(OAUTH_ENDPOINTS.authorization),
    token_endpoint: url(OAUTH_ENDPOINTS.token),
    revocation_endpoint: url(OAUTH_ENDPOINTS.revocation),
    registration_endpoint: url(OAUTH_ENDPOINTS.registration),
    device_authorization_endpoint: url(OAUTH_ENDPOINTS.deviceAuthorization),
    jwks_uri: url(OAUTH_ENDPOINTS.jwks),
    userinfo_endpoint: url(OAUTH_ENDPOINTS.userinfo),
    response_types_supported: ["code"],
    response_modes_supported: ["query", "fragment"],
    grant_types_supported: [...SUPPORTED_GRANT_TYPES],
    code_challenge_methods_supported: ["S256"],
    // Public clients only: PKCE (and, for the device grant, the device code) replace secrets.
    token_endpoint_auth_methods_supported: ["none"],
    revocation_endpoint_auth_methods_supported: ["none"],
    // Device scopes are patterns: any device ID of the spec's grammar after the prefix.
    scopes_supported: [
      OPENID_SCOPE,
      API_SCOPE,
      `${DEVICE_SCOPE_PREFIX}*`,
      UNSTABLE_API_SCOPE,
      `${UNSTABLE_DEVICE_SCOPE_PREFIX}*`,
    ],
    // `create` sends the user to the registration page first: offered only when one can register.
    ...(config.registration !== "closed" ? { prompt_values_supported: ["create"] } : {}),
    account_management_uri: url(OAUTH_PAGES.account),
    account_management_actions_supported: [...ACCOUNT_MANAGEMENT_ACTIONS],
    // RFC 9207: every authorization response carries `iss`, against mix-up attacks.
    authorization_response_iss_parameter_supported: true,
    // OpenID Connect Discovery's required fields: ID tokens are ES256, `sub` is the user ID.
    subject_types_supported: ["public"],
    id_token_signing_alg_values_supported: ["ES256"],
    // `name` comes from userinfo (the display name), the rest from the ID token.
    claims_supported: ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "name"],
    request_parameter_supported: false,
    request_uri_parameter_supported: false,
  };
}
