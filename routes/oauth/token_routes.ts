/**
 * The protocol endpoints of the grants: token (RFC 6749 §3.2: authorization_code, refresh_token
 * and RFC 8628's device_code), revocation (RFC 7009), device authorization (RFC 8628 §3.1), the
 * ID tokens' key set, and OpenID Connect userinfo. Requests are `application/x-www-form-urlencoded`
 * (a JSON body is `invalid_request`); errors are OAuth's `{error, error_description}`, never a 500.
 */
import { type Context, Hono } from "hono";
import type { AppDeps } from "../deps.ts";
import { MatrixError } from "../../domain/errors.ts";
import { OAuthError } from "../../domain/oauth/oauth_errors.ts";
import { readBodyBytes } from "../json_body.ts";
import { OAUTH_ENDPOINTS } from "../../domain/oauth/oauth_paths.ts";
import { DEVICE_CODE_GRANT_TYPE } from "../../domain/oauth/oauth_grants.ts";
import { rateLimited } from "../client/rate_limit_middleware.ts";

/** Token requests are a handful of short parameters; anything bigger is refused unread. */
export const MAX_TOKEN_REQUEST_BYTES = 16 * 1024;

/** How long clients may cache the key set (the key never changes). */
const JWKS_MAX_AGE_SECONDS = 3600;

/** The grant endpoints (mounted only when OAuth is on). */
export function tokenApp(deps: AppDeps): Hono {
  const app = new Hono();
  const limit = rateLimited(deps, "oauth_token");

  app.post(OAUTH_ENDPOINTS.token, limit, async (c) => {
    const form = await readTokenForm(c);
    const grantType = required(form, "grant_type");
    const clientId = required(form, "client_id");
    let response;
    switch (grantType) {
      case "authorization_code":
        response = await deps.oauthGrants.exchangeCode({
          code: required(form, "code"),
          clientId,
          redirectUri: required(form, "redirect_uri"),
          codeVerifier: required(form, "code_verifier"),
        });
        break;
      case "refresh_token":
        response = await deps.oauthGrants.refresh({
          refreshToken: required(form, "refresh_token"),
          clientId,
        });
        break;
      case DEVICE_CODE_GRANT_TYPE:
        response = await deps.oauthGrants.pollDeviceCode({
          deviceCode: required(form, "device_code"),
          clientId,
        });
        break;
      default:
        throw new OAuthError(
          "unsupported_grant_type",
          `grant_type ${JSON.stringify(grantType.slice(0, 100))} is not supported`,
        );
    }
    noStore(c);
    return c.json(response);
  });

  app.post(OAUTH_ENDPOINTS.revocation, limit, async (c) => {
    const form = await readTokenForm(c);
    await deps.oauthGrants.revoke({
      token: required(form, "token"),
      clientId: required(form, "client_id"),
      ...(form.token_type_hint !== undefined && { tokenTypeHint: form.token_type_hint }),
    });
    noStore(c);
    return c.body(null, 200);
  });

  app.post(OAUTH_ENDPOINTS.deviceAuthorization, limit, async (c) => {
    const form = await readTokenForm(c);
    const response = await deps.oauthGrants.startDeviceAuthorization({
      clientId: required(form, "client_id"),
      scope: required(form, "scope"),
    });
    noStore(c);
    return c.json(response);
  });

  app.get(OAUTH_ENDPOINTS.jwks, async (c) => {
    c.header("Cache-Control", `public, max-age=${JWKS_MAX_AGE_SECONDS}`);
    return c.json(await deps.oauthGrants.jwks());
  });

  const userinfo = async (c: Context) => {
    const token = bearerToken(c);
    if (token === undefined) return bearerError(c, 401, "invalid_request", "No Bearer token");
    let session;
    try {
      session = await deps.sessions.resolveAccessToken(token);
    } catch (error) {
      // An expired access token (soft logout) or a guest refused: not a usable token here.
      if (!(error instanceof MatrixError)) throw error;
    }
    if (!session?.oauth) {
      return bearerError(c, 401, "invalid_token", "Unknown, expired or non-OAuth access token");
    }
    const device = await deps.accounts.getDevice(session.userId, session.deviceId);
    if (!device?.oauthScope?.split(" ").includes("openid")) {
      return bearerError(c, 403, "insufficient_scope", "The openid scope was not granted");
    }
    const profile = await deps.profiles.profile(session.userId);
    noStore(c);
    return c.json({
      sub: session.userId,
      ...(profile.displayname !== undefined && { name: profile.displayname }),
    });
  };
  app.get(OAUTH_ENDPOINTS.userinfo, userinfo);
  app.post(OAUTH_ENDPOINTS.userinfo, userinfo);
  return app;
}

/** RFC 6749 §5.1: token answers must not be cached. */
function noStore(c: Context): void {
  c.header("Cache-Control", "no-store");
  c.header("Pragma", "no-cache");
}

function required(form: Record<string, string>, name: string): string {
  const value = form[name];
  if (value === undefined || value === "") {
    throw new OAuthError("invalid_request", `${name} is required`);
  }
  return value;
}

/**
 * The form parameters of a protocol request: `application/x-www-form-urlencoded` only (RFC 6749
 * §3.2; a JSON body is a client bug better told than guessed at), at most
 * MAX_TOKEN_REQUEST_BYTES (413 M_TOO_LARGE), UTF-8, and no parameter twice (§3.1).
 */
async function readTokenForm(c: Context): Promise<Record<string, string>> {
  const type = c.req.header("content-type") ?? "";
  if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(type)) {
    throw new OAuthError(
      "invalid_request",
      "The request body must be application/x-www-form-urlencoded",
    );
  }
  const bytes = await readBodyBytes(c, MAX_TOKEN_REQUEST_BYTES);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new OAuthError("invalid_request", "The request body is not UTF-8");
  }
  // No prototype: a parameter named `__proto__` or `constructor` is just a parameter.
  const form: Record<string, string> = Object.create(null);
  for (const [name, value] of new URLSearchParams(text)) {
    if (Object.hasOwn(form, name)) {
      throw new OAuthError("invalid_request", `${name.slice(0, 100)} is given more than once`);
    }
    form[name] = value;
  }
  return form;
}

function bearerToken(c: Context): string | undefined {
  const header = c.req.header("authorization");
  const match = header?.match(/^Bearer\s+(\S+)\s*$/i);
  return match?.[1];
}

/** RFC 6750 §3: the error in the WWW-Authenticate header and the body. */
function bearerError(
  c: Context,
  status: 401 | 403,
  error: string,
  description: string,
): Response {
  c.header("WWW-Authenticate", `Bearer error="${error}", error_description="${description}"`);
  c.header("Cache-Control", "no-store");
  return c.json({ error, error_description: description }, status);
}
