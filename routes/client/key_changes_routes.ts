/**
 * `GET /keys/changes?from=&to=`: users whose device lists changed between two sync tokens, and
 * users the caller no longer shares a room with (the same answer as /sync's `device_lists`).
 */
import { Hono } from "hono";
import { MatrixError } from "../../domain/errors.ts";
import type { AppDeps } from "../deps.ts";
import type { ClientArea } from "./client_api.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

/** The /keys/changes area. */
export function keyChangesArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);

  v3.get("/keys/changes", session, async (c) => {
    const from = c.req.query("from");
    const to = c.req.query("to");
    if (from === undefined || to === undefined) {
      throw new MatrixError("M_MISSING_PARAM", 400, "from and to are required");
    }
    const userId = c.get("session").userId;
    return c.json(await deps.deviceLists.keyChanges(userId, from, to));
  });

  return { v3: v3 as unknown as Hono };
}
