/** `GET /_matrix/key/v2/server`: our signed server key document. */
import { Hono } from "hono";
import type { AppDeps } from "./deps.ts";
import { signedServerKeys } from "../domain/server_keys.ts";

/** Sub-app serving the server key document. */
export function serverKeysApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.get("/_matrix/key/v2/server", async (c) => {
    const now = deps.now?.() ?? Date.now();
    return c.json(await signedServerKeys(deps.keyring, now));
  });
  return app;
}
