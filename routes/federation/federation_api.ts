/**
 * The Server-Server API: one sub-app per area (keys, transactions, event reads, membership
 * handshakes, queries), each mounted here. Every `/_matrix/federation/*` route but `version`
 * authenticates its caller with the X-Matrix scheme (`serverAuth` in server_auth.ts).
 */
import { Hono } from "hono";
import type { AppDeps } from "../deps.ts";
import { federationVersionApp } from "./federation_version.ts";
import { federationEventReadsApp } from "./event_reads.ts";
import { federationQueriesApp } from "./federation_queries.ts";
import { keysApp } from "./keys.ts";

/** All federation and key routes. */
export function federationApi(deps: AppDeps): Hono {
  const app = new Hono();
  app.route("/", federationVersionApp());
  app.route("/", federationEventReadsApp(deps));
  app.route("/", federationQueriesApp(deps));
  app.route("/", keysApp(deps));
  void deps;
  return app;
}
