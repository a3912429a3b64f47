/** `GET /sync`: query validation at the edge, then the sync service (domain/sync). */
import { Hono } from "hono";
import { z } from "zod";
import type { NotificationCounts } from "../../domain/sync/room_stream.ts";
import { SyncService } from "../../domain/sync/sync_service.ts";
import type { EventPresenterLike } from "../../domain/sync/event_format.ts";
import type { AppDeps } from "../deps.ts";
import { readQuery } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

const syncQuery = z.object({
  filter: z.string().max(65_536).optional(),
  since: z.string().max(64).optional(),
  full_state: z.enum(["true", "false"]).optional(),
  set_presence: z.enum(["offline", "online", "unavailable"]).optional(),
  timeout: z.string().regex(/^\d{1,9}$/, "timeout must be a whole number of milliseconds")
    .optional(),
});

/** Services other areas may or may not have added to AppDeps yet. */
interface OptionalSyncDeps {
  notificationCounts?: NotificationCounts;
  presence?: { markFromSync(userId: string, setPresence?: string): Promise<void> };
  /** The events area's presenter, so sync shows events exactly as /messages does. */
  eventPresenter?: EventPresenterLike;
}

/** The sync area. */
export function syncArea(deps: AppDeps): ClientArea {
  const optional = deps as unknown as OptionalSyncDeps;
  const service = new SyncService({
    store: deps.eventStore,
    notifier: deps.syncNotifier,
    streams: deps.syncStreams,
    notificationCounts: optional.notificationCounts,
    presence: optional.presence,
    presenter: optional.eventPresenter,
    now: deps.now,
  });
  const v3 = new Hono<ClientEnv>();
  v3.use("/sync", requireSession(deps.sessions));
  v3.get("/sync", async (c) => {
    const session = c.get("session");
    const query = readQuery(c, syncQuery);
    const filter = await deps.filters.resolve(session.userId, query.filter);
    const response = await service.sync({
      userId: session.userId,
      deviceId: session.deviceId,
      since: query.since || undefined,
      timeoutMs: Number(query.timeout ?? "0"),
      fullState: query.full_state === "true",
      filter,
      setPresence: query.set_presence,
      signal: c.req.raw.signal,
    });
    return c.json(response);
  });
  return { v3: v3 as unknown as Hono };
}
