/** GET /notifications: the events the user was notified about, newest first. */
import { Hono } from "hono";
import { z } from "zod";
import { NotificationReads } from "../../domain/room_events/notification_reads.ts";
import type { AppDeps } from "../deps.ts";
import { readQuery } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

const DEFAULT_LIMIT = 20;
const MAX_LIMIT = 100;

const query = z.object({
  from: z.string().max(1_000).optional(),
  limit: z.string().regex(/^[0-9]{1,6}$/, "must be a non-negative integer").optional(),
  only: z.string().max(100).optional(),
});

/** The notifications area. */
export function notificationArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);
  // Every notified event leaves through the read pipeline, never formatted here.
  const reads = new NotificationReads({
    notifications: deps.notifications,
    store: deps.eventStore,
    pipeline: deps.readPipeline,
    readPoints: (userId, roomId) => deps.notificationCounts.readPoints(userId, roomId),
  });

  v3.get("/notifications", session, async (c) => {
    const q = readQuery(c, query);
    const limit = Math.min(Math.max(Number(q.limit ?? DEFAULT_LIMIT), 1), MAX_LIMIT);
    return c.json(
      await reads.page(c.get("session"), {
        from: q.from,
        limit,
        onlyHighlight: q.only === "highlight",
      }),
    );
  });

  return { v3: v3 as unknown as Hono };
}
