/**
 * Reporting content: `POST /rooms/{roomId}/report`, `POST /rooms/{roomId}/report/{eventId}` and
 * `POST /users/{userId}/report`; reports are kept for administrators (`deno task reports`).
 */
import { Hono } from "hono";
import { z } from "zod";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { eventIdParam, roomIdParam, userIdParam } from "./path_params.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

const reasonBody = z.object({ reason: z.string() });
const eventReportBody = z.object({ reason: z.string().optional(), score: z.number().optional() });

/** The content reporting area. */
export function reportArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);
  const limited = rateLimited(deps, "report");

  v3.post("/rooms/:roomId/report", session, limited, async (c) => {
    const { reason } = await readJsonBody(c, reasonBody);
    await deps.reports.reportRoom(c.get("session").userId, roomIdParam(c), { reason });
    return c.json({});
  });

  v3.post("/rooms/:roomId/report/:eventId", session, limited, async (c) => {
    const body = await readJsonBody(c, eventReportBody);
    await deps.reports.reportEvent(
      c.get("session").userId,
      roomIdParam(c),
      eventIdParam(c),
      body,
    );
    return c.json({});
  });

  v3.post("/users/:userId/report", session, limited, async (c) => {
    const { reason } = await readJsonBody(c, reasonBody);
    await deps.reports.reportUser(c.get("session").userId, userIdParam(c), { reason });
    return c.json({});
  });

  return { v3: v3 as unknown as Hono };
}
