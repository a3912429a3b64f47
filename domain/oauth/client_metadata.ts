/**
 * Client metadata of RFC 7591 dynamic registration with the Matrix rules (spec: "Client
 * registration", MSC2966): public clients only, `client_uri` as the common base of every other
 * URI, and redirect URIs checked per application type (domain/oauth/redirect_uris.ts). A
 * registration either passes every rule or is refused with a message saying which rule failed.
 */
import type { OAuthClient } from "./oauth_types.ts";
import {
  hostWithin,
  isIpLiteral,
  isLocalHost,
  MAX_URI_LENGTH,
  parseUri,
  redirectUriProblem,
} from "./redirect_uris.ts";

/** The grant types this server implements. */
export const SUPPORTED_GRANT_TYPES: readonly string[] = Object.freeze([
  "authorization_code",
  "refresh_token",
  "urn:ietf:params:oauth:grant-type:device_code",
]);

/** Most redirect URIs one client may register. */
export const MAX_REDIRECT_URIS = 20;

/** Longest `client_name` kept (it is shown on the consent page). */
export const MAX_CLIENT_NAME_LENGTH = 200;

/** The outcome of validating a registration request. */
export type ClientMetadataResult =
  | { ok: true; client: Omit<OAuthClient, "clientId"> }
  | { ok: false; error: "invalid_redirect_uri" | "invalid_client_metadata"; description: string };

/** The metadata URIs that must sit on the client_uri host (besides client_uri itself). */
const OTHER_URIS = ["logo_uri", "tos_uri", "policy_uri"] as const;

/** Fields that may be localized as `<field>#<language tag>` (RFC 7591 §2.2). */
const LOCALIZABLE = /^(?:client_name|client_uri|logo_uri|tos_uri|policy_uri)#[A-Za-z0-9-]{1,35}$/;

/** C0/C1 controls and the Unicode bidirectional marks, embeddings, overrides and isolates. */
const BIDI_OR_CONTROL = /[\p{Cc}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

/** Thrown inside validation and turned into the `ok: false` result. */
class Refusal {
  constructor(
    readonly error: "invalid_redirect_uri" | "invalid_client_metadata",
    readonly description: string,
  ) {}
}

function refuse(description: string): never {
  throw new Refusal("invalid_client_metadata", description);
}

/**
 * Validate a registration request body (`raw`, parsed JSON) registered at `now`. Unknown fields
 * are ignored (RFC 7591 §2), as are localized variants (`client_name#fr`, ...): only the default
 * values are kept and shown. Omitted fields take RFC 7591's defaults where this server supports
 * them (`grant_types` `["authorization_code"]`, `response_types` `["code"]`, `application_type`
 * `web`) and `none` for `token_endpoint_auth_method`, the only method offered.
 */
export function validateClientMetadata(raw: unknown, now: number): ClientMetadataResult {
  try {
    return { ok: true, client: validate(raw, now) };
  } catch (error) {
    if (error instanceof Refusal) {
      return { ok: false, error: error.error, description: error.description };
    }
    throw error;
  }
}

function validate(raw: unknown, now: number): Omit<OAuthClient, "clientId"> {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    refuse("The registration request must be a JSON object");
  }
  const body = raw as Record<string, unknown>;
  for (const key of Object.keys(body)) {
    if (key.includes("#") && !LOCALIZABLE.test(key)) {
      refuse(`${JSON.stringify(key.slice(0, 60))} is not a localizable field`);
    }
    if (LOCALIZABLE.test(key) && typeof body[key] !== "string") {
      refuse(`${key} must be a string`);
    }
  }

  const applicationType = optionalString(body, "application_type") ?? "web";
  if (applicationType !== "web" && applicationType !== "native") {
    refuse('application_type must be "web" or "native"');
  }

  const authMethod = optionalString(body, "token_endpoint_auth_method") ?? "none";
  if (authMethod !== "none") {
    refuse(
      'token_endpoint_auth_method must be "none": only public clients (with PKCE) are registered',
    );
  }

  const clientUri = optionalString(body, "client_uri");
  if (clientUri === undefined) refuse("client_uri is required");
  const clientHost = checkClientUri(clientUri);

  const others: Partial<Record<(typeof OTHER_URIS)[number], string>> = {};
  for (const field of OTHER_URIS) {
    const value = optionalString(body, field);
    if (value === undefined) continue;
    const problem = metadataUriProblem(value, clientHost);
    if (problem !== null) refuse(`${field} ${problem}`);
    others[field] = value;
  }

  const clientName = optionalString(body, "client_name");
  if (clientName !== undefined) {
    if (clientName.trim() === "" || clientName.length > MAX_CLIENT_NAME_LENGTH) {
      refuse(`client_name must be 1 to ${MAX_CLIENT_NAME_LENGTH} characters`);
    }
    // Control and bidirectional override characters would make the consent page lie about
    // what follows them (a zero-width joiner in an emoji is fine).
    if (BIDI_OR_CONTROL.test(clientName)) refuse("client_name contains control characters");
  }

  const grantTypes = optionalStringArray(body, "grant_types") ?? ["authorization_code"];
  if (grantTypes.length === 0) refuse("grant_types must not be empty");
  for (const grant of grantTypes) {
    if (!SUPPORTED_GRANT_TYPES.includes(grant)) {
      refuse(
        `grant type ${JSON.stringify(grant.slice(0, 100))} is not supported (supported: ${
          SUPPORTED_GRANT_TYPES.join(", ")
        })`,
      );
    }
  }
  const authorizationCode = grantTypes.includes("authorization_code");
  const refreshOnly = grantTypes.every((grant) => grant === "refresh_token");
  if (refreshOnly) refuse("grant_types must include a grant that issues tokens");

  const responseTypes = optionalStringArray(body, "response_types") ??
    (authorizationCode ? ["code"] : []);
  if (responseTypes.some((type) => type !== "code")) {
    refuse('response_types may only contain "code"');
  }
  if (authorizationCode !== responseTypes.includes("code")) {
    refuse(
      'response_types must be ["code"] exactly when grant_types includes authorization_code',
    );
  }

  const redirectUris = optionalStringArray(body, "redirect_uris");
  if (authorizationCode && (redirectUris === undefined || redirectUris.length === 0)) {
    throw new Refusal(
      "invalid_redirect_uri",
      "redirect_uris is required for the authorization_code grant",
    );
  }
  if (redirectUris !== undefined && redirectUris.length > 0 && !authorizationCode) {
    refuse("redirect_uris are given but grant_types does not include authorization_code");
  }
  if (redirectUris !== undefined && redirectUris.length > MAX_REDIRECT_URIS) {
    throw new Refusal(
      "invalid_redirect_uri",
      `at most ${MAX_REDIRECT_URIS} redirect_uris may be registered`,
    );
  }
  for (const uri of redirectUris ?? []) {
    const problem = redirectUriProblem(uri, applicationType, clientHost);
    if (problem !== null) {
      throw new Refusal(
        "invalid_redirect_uri",
        `redirect_uri ${JSON.stringify(uri.slice(0, 200))} ${problem}`,
      );
    }
  }

  return {
    applicationType,
    clientUri,
    ...(clientName !== undefined ? { clientName } : {}),
    ...(others.logo_uri !== undefined ? { logoUri: others.logo_uri } : {}),
    ...(others.tos_uri !== undefined ? { tosUri: others.tos_uri } : {}),
    ...(others.policy_uri !== undefined ? { policyUri: others.policy_uri } : {}),
    redirectUris: [...new Set(redirectUris ?? [])],
    grantTypes: [...new Set(grantTypes)],
    responseTypes: [...new Set(responseTypes)],
    tokenEndpointAuthMethod: "none",
    createdAt: now,
  };
}

/**
 * Check `client_uri` (https, no user information, a public DNS host) and give its host, which
 * every other URI of the client is measured against.
 */
function checkClientUri(clientUri: string): string {
  const parsed = parseUri(clientUri);
  if (typeof parsed === "string") refuse(`client_uri ${parsed}`);
  if (parsed.scheme !== "https") refuse("client_uri must use https");
  if (parsed.userinfo) refuse("client_uri must not have user information (user@) in it");
  const host = parsed.url.hostname;
  if (isIpLiteral(host)) refuse("client_uri must name a DNS host, not an IP address");
  if (isLocalHost(host)) refuse("client_uri must not be on localhost");
  if (host.endsWith(".")) refuse("client_uri host must not end with a dot");
  // A single label (`https://example/`) reversed is a scheme anyone could claim (`example:`).
  if (!host.includes(".")) refuse("client_uri host must be a fully qualified domain name");
  return host;
}

/** Why a logo, terms or policy URI is not acceptable; null when it is. */
function metadataUriProblem(value: string, clientHost: string): string | null {
  const parsed = parseUri(value);
  if (typeof parsed === "string") return parsed;
  if (parsed.scheme !== "https") return "must use https";
  if (parsed.userinfo) return "must not have user information (user@) in it";
  if (!hostWithin(parsed.url.hostname, clientHost)) {
    return `must be on the client_uri host ${clientHost} or a subdomain of it`;
  }
  return null;
}

function optionalString(body: Record<string, unknown>, field: string): string | undefined {
  if (!Object.hasOwn(body, field) || body[field] === undefined || body[field] === null) {
    return undefined;
  }
  const value = body[field];
  if (typeof value !== "string") refuse(`${field} must be a string`);
  if (value.length > MAX_URI_LENGTH) refuse(`${field} is too long`);
  return value;
}

function optionalStringArray(body: Record<string, unknown>, field: string): string[] | undefined {
  if (!Object.hasOwn(body, field) || body[field] === undefined || body[field] === null) {
    return undefined;
  }
  const value = body[field];
  if (!Array.isArray(value) || value.some((item) => typeof item !== "string")) {
    throw new Refusal(
      field === "redirect_uris" ? "invalid_redirect_uri" : "invalid_client_metadata",
      `${field} must be an array of strings`,
    );
  }
  if (value.length > 50) refuse(`${field} has too many entries`);
  return value as string[];
}

/**
 * The registered metadata as RFC 7591 §3.2.1 answers it (and as clients read it back): the
 * client ID, when it was issued (seconds), and every field as registered or defaulted.
 */
export function clientMetadataResponse(client: OAuthClient): Record<string, unknown> {
  return {
    client_id: client.clientId,
    client_id_issued_at: Math.floor(client.createdAt / 1000),
    application_type: client.applicationType,
    client_uri: client.clientUri,
    ...(client.clientName !== undefined ? { client_name: client.clientName } : {}),
    ...(client.logoUri !== undefined ? { logo_uri: client.logoUri } : {}),
    ...(client.tosUri !== undefined ? { tos_uri: client.tosUri } : {}),
    ...(client.policyUri !== undefined ? { policy_uri: client.policyUri } : {}),
    ...(client.redirectUris.length > 0 ? { redirect_uris: client.redirectUris } : {}),
    grant_types: client.grantTypes,
    response_types: client.responseTypes,
    token_endpoint_auth_method: client.tokenEndpointAuthMethod,
  };
}
