/** `GET /sync`: query validation at the edge, then the sync service (domain/sync). */
import { Hono } from "hono";
import { z } from "zod";
import { SyncService } from "../../domain/sync/sync_service.ts";
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

/** The sync area. */
export function syncArea(deps: AppDeps): ClientArea {
  // The read pipeline, so sync shows events exactly as /messages does (history visibility,
  // redactions, ignored users, the sending device's transaction IDs, prev_content).
  const service = new SyncService({
    store: deps.eventStore,
    notifier: deps.syncNotifier,
    streams: deps.syncStreams,
    notificationCounts: deps.notificationCounts,
    presence: deps.presence,
    pipeline: deps.readPipeline,
    sentMembers: deps.sentMembers,
    remoteMemberships: deps.remoteMemberships,
    now: deps.now,
  });
  const v3 = new Hono<ClientEnv>();
  v3.use("/sync", requireSession(deps.sessions));
  v3.get("/sync", async (c) => {
    const session = c.get("session");
    const query = readQuery(c, syncQuery);
    const filter = await deps.filters.resolve(session.userId, query.filter);
    const disconnect = clientDisconnect(c.req.raw, deps.shutdown);
    try {
      const response = await service.sync({
        userId: session.userId,
        deviceId: session.deviceId,
        since: query.since || undefined,
        timeoutMs: longPollTimeout(deps, query.timeout),
        fullState: query.full_state === "true",
        filter,
        setPresence: query.set_presence,
        clientGone: disconnect.signal,
      });
      return c.json(response);
    } finally {
      disconnect.release();
    }
  });
  return { v3: v3 as unknown as Hono };
}

/**
 * The client's disconnect, as a signal that aborts only while the sync still runs. Deno.serve
 * in its default (legacy) mode also aborts `request.signal` after every delivered response and
 * warns about handlers that read it; so it is read only when a long-poll is about to wait (the
 * service asks through `signal()`), and the listener goes when the handler is done, so the
 * abort that marks a delivered response never reaches a wait. `shutdown` (AppDeps.shutdown)
 * ends the wait too: the long-poll then answers with what it has, as at its timeout.
 */
export function clientDisconnect(
  request: Request,
  shutdown?: AbortSignal,
): { signal(): AbortSignal; release(): void } {
  const controller = new AbortController();
  let released = false;
  let source: AbortSignal | undefined;
  const onAbort = () => {
    if (!released) controller.abort();
  };
  return {
    signal() {
      if (!source && !released) {
        source = request.signal;
        if (source.aborted || shutdown?.aborted) onAbort();
        else {
          source.addEventListener("abort", onAbort, { once: true });
          shutdown?.addEventListener("abort", onAbort, { once: true });
        }
      }
      return controller.signal;
    },
    release() {
      released = true;
      source?.removeEventListener("abort", onAbort);
      shutdown?.removeEventListener("abort", onAbort);
    },
  };
}

/**
 * A client's long-poll `timeout` cut to the configured longest (TESSERA_LONG_POLL_MAX_MS), for
 * platforms and proxies that end requests held open longer.
 */
export function longPollTimeout(deps: Pick<AppDeps, "config">, timeout?: string): number {
  return Math.min(Number(timeout ?? "0"), deps.config.longPollMaxMs);
}
