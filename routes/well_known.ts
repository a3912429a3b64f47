/**
 * Server discovery: `/.well-known/matrix/client`, `/.well-known/matrix/server` and
 * `/.well-known/matrix/support` (from `TESSERA_SUPPORT_CONTACTS` / `TESSERA_SUPPORT_PAGE`).
 */
import { Hono } from "hono";
import type { AppDeps } from "./deps.ts";
import { clientBaseUrl, delegatedServer } from "../domain/discovery.ts";
import { MatrixError } from "../domain/errors.ts";

/** Sub-app serving the well-known documents. */
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
  // The spec: a server without support information answers 404.
  app.get("/.well-known/matrix/support", (c) => {
    const support = deps.config.support;
    if (support === undefined) {
      throw new MatrixError("M_NOT_FOUND", 404, "No support information is configured");
    }
    return c.json({
      contacts: support.contacts,
      ...(support.page !== undefined ? { support_page: support.page } : {}),
    });
  });
  return app;
}
