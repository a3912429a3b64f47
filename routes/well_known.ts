/** Server discovery: `/.well-known/matrix/client` and `/.well-known/matrix/server`. */
import { Hono } from "hono";
import type { AppDeps } from "./deps.ts";
import { clientBaseUrl, delegatedServer } from "../domain/discovery.ts";

/** Sub-app serving the two well-known documents. */
export function wellKnownApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.get(
    "/.well-known/matrix/client",
    (c) => c.json({ "m.homeserver": { base_url: clientBaseUrl(deps.config) } }),
  );
  app.get(
    "/.well-known/matrix/server",
    (c) => c.json({ "m.server": delegatedServer(deps.config) }),
  );
  return app;
}
