/**
 * The Server-Server API: one sub-app per area (keys, transactions, event reads, membership
 * handshakes, queries), each mounted here. Every `/_matrix/federation/*` route but those in
 * WITHOUT_SERVER_AUTH authenticates its caller with the X-Matrix scheme (`serverAuth`).
 */
import { Hono } from "hono";
import type { AppDeps } from "../deps.ts";
import { forbidden } from "../../domain/errors.ts";
import { serverAuth } from "./server_auth.ts";
import { federationVersionApp } from "./federation_version.ts";
import { federationMembershipApp } from "./membership.ts";
import { federationTransactionsApp } from "./transactions.ts";
import { federationEventReadsApp } from "./event_reads.ts";
import { federationQueriesApp } from "./federation_queries.ts";
import { keysApp } from "./keys.ts";
import { federationUserKeysApp } from "./user_keys.ts";
import { federationMediaApp } from "../media/federation_media_routes.ts";

/**
 * Federation paths callers reach without an X-Matrix signature: the version, OpenID userinfo
 * (integration managers) and 3PID bindings (identity servers, which have no server keys).
 */
const WITHOUT_SERVER_AUTH =
  /^\/_matrix\/federation\/v1\/(version|openid\/userinfo|3pid\/onbind)\/?$/;

/** All federation and key routes. */
export function federationApi(deps: AppDeps): Hono {
  const app = new Hono();
  // Before every sub-app: with federation off nothing but the version (and OpenID, which
  // integration managers use) is served; otherwise every request is authenticated here too, so
  // a route that forgets `serverAuth` cannot serve an anonymous caller (it runs once per request).
  const auth = serverAuth(deps);
  app.use("/_matrix/federation/*", (c, next) => {
    if (WITHOUT_SERVER_AUTH.test(c.req.path)) return next();
    if (!deps.config.federation.enabled) throw forbidden("Federation is disabled on this server");
    return auth(c, next);
  });
  app.route("/", federationVersionApp());
  app.route("/", federationMembershipApp(deps));
  app.route("/", federationTransactionsApp(deps));
  app.route("/", federationEventReadsApp(deps));
  app.route("/", federationQueriesApp(deps));
  app.route("/", keysApp(deps));
  app.route("/", federationUserKeysApp(deps));
  app.route("/", federationMediaApp(deps));
  return app;
}
