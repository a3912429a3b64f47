/** Uploading and reading sync filters: `POST /user/{userId}/filter`, `GET .../filter/{filterId}`. */
import { Hono } from "hono";
import { z } from "zod";
import { forbidden } from "../../domain/errors.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { pathParam } from "./path_params.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

/** The filter area: a user may only store and read their own filters. */
export function filterArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  v3.use("/user/:userId/filter", requireSession(deps.sessions));
  v3.use("/user/:userId/filter/*", requireSession(deps.sessions));

  v3.post("/user/:userId/filter", rateLimited(deps, "filter"), async (c) => {
    const userId = c.req.param("userId");
    if (userId !== c.get("session").userId) {
      throw forbidden("Cannot create filters for other users");
    }
    // Shape is checked by the filter service (M_BAD_JSON with the failing path).
    const body = await readJsonBody(c, z.record(z.string(), z.unknown()));
    const filterId = await deps.filters.create(userId, body as JsonObject);
    return c.json({ filter_id: filterId });
  });

  v3.get("/user/:userId/filter/:filterId", async (c) => {
    const userId = c.req.param("userId");
    if (userId !== c.get("session").userId) {
      throw forbidden("Cannot read filters of other users");
    }
    return c.json(await deps.filters.get(userId, pathParam(c, "filterId")));
  });

  return { v3: v3 as unknown as Hono };
}
