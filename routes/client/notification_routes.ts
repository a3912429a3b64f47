/** GET /notifications: the events the user was notified about, newest first. */
import { Hono } from "hono";
import { z } from "zod";
import { toClientEvent } from "../../domain/client_event.ts";
import { roomVersion } from "../../domain/room_versions.ts";
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

  v3.get("/notifications", session, async (c) => {
    const userId = c.get("session").userId;
    const q = readQuery(c, query);
    const limit = Math.min(Math.max(Number(q.limit ?? DEFAULT_LIMIT), 1), MAX_LIMIT);
    const page = await deps.notifications.page(userId, {
      from: q.from,
      limit,
      onlyHighlight: q.only === "highlight",
    });
    const store = deps.eventStore;
    const roomIds = [...new Set(page.entries.map((e) => e.roomId))];
    const [events, heads, readPoints] = await Promise.all([
      store.getEvents(page.entries.map((e) => e.eventId)),
      Promise.all(roomIds.map((r) => store.roomHead(r))),
      Promise.all(roomIds.map((r) => deps.notificationCounts.readPoints(userId, r))),
    ]);
    const versions = new Map(roomIds.map((r, i) => [r, roomVersion(heads[i]?.roomVersion ?? "")]));
    const points = new Map(roomIds.map((r, i) => [r, readPoints[i]]));
    const now = deps.now?.() ?? Date.now();
    const notifications = [];
    for (const entry of page.entries) {
      const stored = events.get(entry.eventId);
      const version = versions.get(entry.roomId);
      if (!stored || !version) continue;
      const { room_id: _, ...event } = toClientEvent(entry.eventId, stored.pdu, {
        roomId: entry.roomId,
        version,
        now,
      });
      const readUpTo = await points.get(entry.roomId)!.thread(entry.threadId);
      notifications.push({
        actions: entry.actions,
        event,
        read: entry.position <= readUpTo,
        room_id: entry.roomId,
        ts: entry.ts,
      });
    }
    return c.json(
      page.next === undefined ? { notifications } : {
        next_token: page.next,
        notifications,
      },
    );
  });

  return { v3: v3 as unknown as Hono };
}
