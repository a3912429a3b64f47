/**
 * Discovery and dynamic client registration of the OAuth 2.0 API: `auth_metadata` (v1 and
 * MSC2965's unstable path), MSC2965's unstable `auth_issuer`, the issuer's OpenID Connect and
 * RFC 8414 well-known documents, and RFC 7591 registration.
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import type { AppDeps } from "../deps.ts";
import { MatrixError, unrecognized } from "../../domain/errors.ts";
import { OAuthError } from "../../domain/oauth/oauth_errors.ts";
import { OAUTH_ENDPOINTS, oauthIssuer } from "../../domain/oauth/oauth_paths.ts";
import { authServerMetadata } from "../../domain/oauth/server_metadata.ts";
import { clientMetadataResponse } from "../../domain/oauth/client_metadata.ts";
import { readJsonBody } from "../json_body.ts";
import { rateLimited } from "../client/rate_limit_middleware.ts";

/** A registration request is a few URIs and names; anything bigger is refused unread. */
export const MAX_REGISTRATION_BODY_BYTES = 65_536;

/** How long clients may cache the metadata (the spec asks them to honour caching headers). */
const METADATA_MAX_AGE_SECONDS = 300;

/**
 * The discovery documents. Mounted whether or not OAuth is on: with `TESSERA_OAUTH=off`,
 * `auth_metadata` answers 404 M_UNRECOGNIZED, which is how the spec tells clients to use the
 * legacy API (and the other documents answer the same, rather than describe a server that is
 * not there).
 */
export function authMetadataApp(deps: AppDeps): Hono {
  const app = new Hono();
  const enabled = () => {
    if (!deps.config.oauth.enabled) {
      throw unrecognized(404, "The OAuth 2.0 API is not enabled on this server");
    }
  };
  const metadata = (c: Context) => {
    enabled();
    c.header("Cache-Control", `public, max-age=${METADATA_MAX_AGE_SECONDS}`);
    return c.json(authServerMetadata(deps.config));
  };
  app.get(OAUTH_ENDPOINTS.authMetadata, metadata);
  app.get(OAUTH_ENDPOINTS.unstableAuthMetadata, metadata);
  app.get(OAUTH_ENDPOINTS.openidConfiguration, metadata);
  app.get(OAUTH_ENDPOINTS.oauthAuthorizationServer, metadata);
  app.get(OAUTH_ENDPOINTS.unstableAuthIssuer, (c) => {
    enabled();
    c.header("Cache-Control", `public, max-age=${METADATA_MAX_AGE_SECONDS}`);
    return c.json({ issuer: oauthIssuer(deps.config) });
  });
  return app;
}

/** RFC 7591 dynamic client registration (mounted only when OAuth is on). */
export function clientRegistrationApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.post(
    OAUTH_ENDPOINTS.registration,
    rateLimited(deps, "oauth_client_registration"),
    async (c) => {
      const body = await readRegistrationBody(c);
      const client = await deps.oauthClients.register(body);
      // RFC 7591 §3.2.1: the answer is specific to this request and must not be cached.
      c.header("Cache-Control", "no-store");
      return c.json(clientMetadataResponse(client), 201);
    },
  );
  return app;
}

/**
 * The registration body as parsed JSON. Size limits answer 413 M_TOO_LARGE like every other
 * endpoint; a body that is not JSON is RFC 7591's `invalid_client_metadata`, the error OAuth
 * clients read from this endpoint.
 */
async function readRegistrationBody(c: Context): Promise<unknown> {
  try {
    return await readJsonBody(c, z.unknown(), { maxBytes: MAX_REGISTRATION_BODY_BYTES });
  } catch (error) {
    if (error instanceof MatrixError && error.status === 400) {
      throw new OAuthError("invalid_client_metadata", error.message);
    }
    throw error;
  }
}
