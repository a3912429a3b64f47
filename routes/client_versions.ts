/** `GET /_matrix/client/versions`: which spec versions and unstable features we serve. */
import { Hono } from "hono";

/**
 * Spec versions advertised to clients. A version is listed only once the client-server
 * endpoints it needs work end to end; until the Client-Server API lands (issue 3) that is none,
 * because a client told "v1.x" would go on to call /login and /sync.
 */
export const ADVERTISED_SPEC_VERSIONS: readonly string[] = [];

/** Unstable features we actually implement (none yet). */
export const UNSTABLE_FEATURES: Readonly<Record<string, boolean>> = {};

/** Sub-app serving the versions endpoint. */
export function clientVersionsApp(): Hono {
  const app = new Hono();
  app.get("/_matrix/client/versions", (c) =>
    c.json({
      versions: [...ADVERTISED_SPEC_VERSIONS],
      unstable_features: { ...UNSTABLE_FEATURES },
    }));
  return app;
}
