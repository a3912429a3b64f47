/** `GET /health`: liveness plus a storage round trip, for load balancers and operators. */
import { Hono } from "hono";
import type { AppDeps } from "./deps.ts";

/** Sub-app serving the health endpoint. */
export function healthApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.get("/health", async (c) => {
    const storage = await deps.storageHealthy().catch(() => false);
    return c.json({ status: storage ? "ok" : "degraded", storage }, storage ? 200 : 503);
  });
  return app;
}
