/** `GET /_matrix/federation/v1/version`: the server's name and version. */
import { Hono } from "hono";
import { SERVER_SOFTWARE } from "../../domain/server_software.ts";

/** Sub-app serving the federation version endpoint. */
export function federationVersionApp(): Hono {
  const app = new Hono();
  app.get(
    "/_matrix/federation/v1/version",
    (c) => c.json({ server: { name: SERVER_SOFTWARE.name, version: SERVER_SOFTWARE.version } }),
  );
  return app;
}
