/**
 * The OAuth 2.0 authorization server and its pages: one sub-app per part (metadata and client
 * registration, the grants, the sign-in and consent pages, account management, upstream
 * sign-in), mounted only when `TESSERA_OAUTH` is on, except the legacy SSO and upstream routes
 * which work without it.
 */
import { Hono } from "hono";
import type { AppDeps } from "../deps.ts";
import { authMetadataApp, clientRegistrationApp } from "./client_registration_routes.ts";
import { tokenApp } from "./token_routes.ts";
import { signInApp } from "./sign_in_app.ts";
import { upstreamApp } from "./upstream_routes.ts";
import { accountPagesApp } from "./account_pages.ts";

/** Every OAuth route; `buildApp` mounts it at the root. */
export function oauthApp(deps: AppDeps): Hono {
  const app = new Hono();
  // Before the early return: with OAuth off, auth_metadata must answer 404 M_UNRECOGNIZED.
  app.route("/", authMetadataApp(deps));
  // Upstream sign-in and the legacy SSO flow work with the OAuth API off too.
  app.route("/", upstreamApp(deps));
  if (!deps.config.oauth.enabled) return app;
  app.route("/", clientRegistrationApp(deps));
  app.route("/", tokenApp(deps));
  app.route("/", signInApp(deps));
  app.route("/", accountPagesApp(deps));
  // Each part mounts its sub-app here: app.route("/", partApp(deps));
  return app;
}
