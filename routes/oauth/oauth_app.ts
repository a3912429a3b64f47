/**
 * The OAuth 2.0 authorization server and its pages: one sub-app per part (metadata and client
 * registration, the grants, the sign-in and consent pages, account management, upstream
 * sign-in), mounted only when `TESSERA_OAUTH` is on, except the legacy SSO and upstream routes
 * which work without it.
 */
import { Hono } from "hono";
import type { AppDeps } from "../deps.ts";

/** Every OAuth route; `buildApp` mounts it at the root. */
export function oauthApp(deps: AppDeps): Hono {
  const app = new Hono();
  if (!deps.config.oauth.enabled) return app;
  // Each part mounts its sub-app here: app.route("/", partApp(deps));
  return app;
}
