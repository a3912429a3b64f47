/**
 * The HTTP application: one Hono sub-app per API area, mounted under a root that adds CORS,
 * Matrix error bodies, 404 M_UNRECOGNIZED for unknown paths and 405 for wrong methods.
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import { MatrixError, unrecognized } from "../domain/errors.ts";
import type { AppDeps } from "./deps.ts";
import { clientVersionsApp } from "./client_versions.ts";
import { wellKnownApp } from "./well_known.ts";
import { federationApi } from "./federation/federation_api.ts";
import { healthApp } from "./health.ts";
import { clientApi } from "./client/client_api.ts";
import { openIdUserInfoApp } from "./openid_userinfo.ts";
import { threepidOnbindApp } from "./threepid_onbind.ts";
import { oauthApp } from "./oauth/oauth_app.ts";
import { mediaApp } from "./media/media_app.ts";
import { OAuthError } from "../domain/oauth/oauth_errors.ts";

/** Build the whole HTTP surface from its injected services. */
export function buildApp(deps: AppDeps): Hono {
  const app = new Hono();
  // Browser clients (Hydrogen, Element Web) preflight every path, .well-known included, so CORS
  // runs before routing and answers OPTIONS even for paths we do not serve.
  app.use(
    "*",
    cors({
      origin: "*",
      allowMethods: ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"],
      allowHeaders: ["X-Requested-With", "Content-Type", "Authorization", "Accept"],
      maxAge: 86400,
    }),
  );

  app.route("/", clientVersionsApp());
  app.route("/", wellKnownApp(deps));
  app.route("/", federationApi(deps));
  app.route("/", mediaApp(deps));
  app.route("/", healthApp(deps));
  app.route("/", clientApi(deps));
  app.route("/", openIdUserInfoApp(deps));
  app.route("/", threepidOnbindApp(deps));
  app.route("/", oauthApp(deps));

  const patterns = routePatterns(app);
  app.notFound((c) => {
    const path = new URL(c.req.url).pathname;
    const known = patterns.some((p) => p.test(path));
    const err = known ? unrecognized(405, "Method not allowed") : unrecognized(404);
    return c.json(err.toJSON(), err.status as 404 | 405);
  });
  app.onError((error, c) => {
    if (error instanceof OAuthError) {
      // RFC 6749 §5.2: a client that failed to authenticate is told how to.
      if (error.status === 401) c.header("WWW-Authenticate", 'Basic realm="oauth"');
      c.header("Cache-Control", "no-store");
      return c.json(error.toJSON(), error.status);
    }
    if (error instanceof MatrixError) {
      // Every 429 says when to come back in the header too, wherever in the domain it arose.
      const retryAfterMs = error.extra.retry_after_ms;
      if (error.status === 429 && typeof retryAfterMs === "number") {
        c.header("Retry-After", String(Math.ceil(retryAfterMs / 1000)));
      }
      return c.json(error.toJSON(), error.status as 400);
    }
    console.error("unhandled error", c.req.method, c.req.path, error);
    return c.json({ errcode: "M_UNKNOWN", error: "Internal server error" }, 500);
  });
  return app;
}

/** Path patterns of every registered route, so a miss can be told apart as 404 or 405. */
function routePatterns(app: Hono): RegExp[] {
  const seen = new Set<string>();
  const patterns: RegExp[] = [];
  for (const route of app.routes) {
    if (route.method === "ALL" || seen.has(route.path)) continue;
    seen.add(route.path);
    const source = route.path
      .split("/")
      .map((segment) =>
        segment.startsWith(":") ? "[^/]+" : segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
      )
      .join("/");
    patterns.push(new RegExp(`^${source}/?$`));
  }
  return patterns;
}
