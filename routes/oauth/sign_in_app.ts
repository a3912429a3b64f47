/**
 * The browser side of the authorization server: the authorization endpoint, and the pages a
 * browser goes through to answer it (login, register, consent, logout) or to approve another
 * device (link).
 */
import { Hono } from "hono";
import type { AppDeps } from "../deps.ts";
import { authorizationRoutes } from "./authorization_routes.ts";
import { deviceLinkPage } from "./device_link_page.ts";
import { signInPages } from "./sign_in_pages.ts";

/** The authorization endpoint and the sign-in, consent and link pages. */
export function signInApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.route("/", authorizationRoutes(deps));
  app.route("/", signInPages(deps));
  app.route("/", deviceLinkPage(deps));
  return app;
}
