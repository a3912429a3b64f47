/**
 * Scopes of the Matrix OAuth 2.0 API (spec: "Scope"): `urn:matrix:client:api:*` (full access to
 * the client-server API), `urn:matrix:client:device:<device ID>` (the device the session creates
 * or binds) and OpenID Connect's `openid`. MSC2967's unstable spellings
 * (`urn:matrix:org.matrix.msc2967.client:...`) are accepted, since clients still send them.
 */
import type { MatrixScope } from "./oauth_types.ts";
import { OAuthError } from "./oauth_errors.ts";
import { newDeviceId } from "../accounts/tokens.ts";
import { isValidOpaqueId } from "../protocol/identifiers.ts";

/** The API scope, stable spelling. */
export const API_SCOPE = "urn:matrix:client:api:*";
/** The API scope as MSC2967 spelled it. */
export const UNSTABLE_API_SCOPE = "urn:matrix:org.matrix.msc2967.client:api:*";
/** Prefix of the device scope, stable spelling. */
export const DEVICE_SCOPE_PREFIX = "urn:matrix:client:device:";
/** Prefix of the device scope as MSC2967 spelled it. */
export const UNSTABLE_DEVICE_SCOPE_PREFIX = "urn:matrix:org.matrix.msc2967.client:device:";
/** OpenID Connect: an ID token comes with the tokens. */
export const OPENID_SCOPE = "openid";

/** Every scope this server knows (the metadata's `scopes_supported`, device scope aside). */
export const SUPPORTED_SCOPES: readonly string[] = Object.freeze([
  OPENID_SCOPE,
  API_SCOPE,
  UNSTABLE_API_SCOPE,
]);

/** RFC 6749 §3.3: `scope-token = 1*NQCHAR` (printable ASCII but `"` and `\`). */
const SCOPE_TOKEN_PATTERN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

/** Longer scope strings are refused unread (a few tokens is all a client needs). */
const MAX_SCOPE_LENGTH = 2048;

/**
 * Parse a requested scope. It must ask for the API scope; it may name one device (a device ID
 * of the spec's opaque grammar) and `openid`; any other token is refused, so a client never
 * believes it was granted something it was not. Without a device scope the server picks a new
 * device ID and adds its scope (in the API scope's spelling) to the granted scope. Throws
 * OAuthError `invalid_scope`.
 */
export function parseScope(scope: string): MatrixScope {
  if (scope.length > MAX_SCOPE_LENGTH) {
    throw new OAuthError("invalid_scope", `scope is longer than ${MAX_SCOPE_LENGTH} characters`);
  }
  const tokens = [...new Set(scope.split(" ").filter((token) => token !== ""))];
  let stableApi = false;
  let unstableApi = false;
  let openid = false;
  let deviceId: string | undefined;
  for (const token of tokens) {
    if (!SCOPE_TOKEN_PATTERN.test(token)) {
      throw new OAuthError("invalid_scope", "scope contains characters RFC 6749 does not allow");
    }
    if (token === API_SCOPE) stableApi = true;
    else if (token === UNSTABLE_API_SCOPE) unstableApi = true;
    else if (token === OPENID_SCOPE) openid = true;
    else {
      const id = deviceIdOf(token);
      if (id === undefined) {
        throw new OAuthError(
          "invalid_scope",
          `unknown scope ${JSON.stringify(token.slice(0, 100))}`,
        );
      }
      // The spec's opaque identifier grammar: 1..255 of `[A-Za-z0-9._~-]`.
      if (!isValidOpaqueId(id)) {
        throw new OAuthError(
          "invalid_scope",
          "device ID in the device scope must be 1 to 255 characters of A-Z a-z 0-9 . _ ~ -",
        );
      }
      if (deviceId !== undefined && deviceId !== id) {
        throw new OAuthError("invalid_scope", "scope names more than one device");
      }
      deviceId = id;
    }
  }
  if (!stableApi && !unstableApi) {
    throw new OAuthError("invalid_scope", `scope must include ${API_SCOPE}`);
  }
  if (deviceId === undefined) {
    deviceId = newDeviceId();
    tokens.push((stableApi ? DEVICE_SCOPE_PREFIX : UNSTABLE_DEVICE_SCOPE_PREFIX) + deviceId);
  }
  return { api: true, deviceId, openid, scope: tokens.join(" ") };
}

/** The device ID of a device scope token (either spelling); undefined for other tokens. */
function deviceIdOf(token: string): string | undefined {
  for (const prefix of [DEVICE_SCOPE_PREFIX, UNSTABLE_DEVICE_SCOPE_PREFIX]) {
    if (token.startsWith(prefix)) return token.slice(prefix.length);
  }
  return undefined;
}
