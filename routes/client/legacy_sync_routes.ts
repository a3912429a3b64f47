/**
 * The legacy sync endpoints still in the spec (deprecated in r0): `GET /events` (with
 * `room_id`, peeking into a `world_readable` room), `GET /events/{eventId}`, `GET /initialSync`
 * and `GET /rooms/{roomId}/initialSync`. Validation here; the work is in domain/sync
 * (legacy_event_stream.ts, initial_sync.ts), on the sync machinery and the read pipeline.
 */
import { Hono } from "hono";
import { z } from "zod";
import { MatrixError, notFound } from "../../domain/errors.ts";
import { parseRoomId, requireValid } from "../../domain/protocol/identifiers.ts";
import { InitialSync } from "../../domain/sync/initial_sync.ts";
import { LegacyEventStream } from "../../domain/sync/legacy_event_stream.ts";
import type { AppDeps } from "../deps.ts";
import { readQuery } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { eventIdParam, MAX_PATH_PARAM_BYTES, roomIdParam } from "./path_params.ts";
import { clientDisconnect, longPollTimeout } from "./sync_routes.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

const whole = (what: string) => z.string().regex(/^\d{1,9}$/, `${what} must be a whole number`);

const eventsQuery = z.object({
  from: z.string().max(64).optional(),
  timeout: whole("timeout").optional(),
  limit: whole("limit").optional(),
  room_id: z.string().max(MAX_PATH_PARAM_BYTES).optional(),
});

const initialSyncQuery = z.object({
  limit: whole("limit").optional(),
  archived: z.enum(["true", "false"]).optional(),
});

const roomInitialSyncQuery = z.object({ limit: whole("limit").optional() });

/** The legacy sync area. */
export function legacySyncArea(deps: AppDeps): ClientArea {
  const stream = new LegacyEventStream({
    store: deps.eventStore,
    notifier: deps.syncNotifier,
    streams: deps.syncStreams,
    pipeline: deps.readPipeline,
    presence: deps.presence,
    remoteMemberships: deps.remoteMemberships,
    now: deps.now,
  });
  const snapshots = new InitialSync({
    store: deps.eventStore,
    pipeline: deps.readPipeline,
    streams: deps.syncStreams,
    directory: deps.roomDirectory,
    presence: deps.presence,
    remoteMemberships: deps.remoteMemberships,
    now: deps.now,
  });
  const auth = requireSession(deps.sessions);
  const v3 = new Hono<ClientEnv>();
  const reader = (session: { userId: string; deviceId: string }) => ({
    userId: session.userId,
    deviceId: session.deviceId,
  });

  v3.get("/events", auth, async (c) => {
    const session = c.get("session");
    const query = readQuery(c, eventsQuery);
    if (query.room_id !== undefined) requireValid(parseRoomId(query.room_id));
    const disconnect = clientDisconnect(c.req.raw, deps.shutdown);
    try {
      return c.json(
        await stream.events({
          userId: session.userId,
          deviceId: session.deviceId,
          from: query.from || undefined,
          timeoutMs: longPollTimeout(deps, query.timeout),
          limit: query.limit === undefined ? undefined : Number(query.limit),
          roomId: query.room_id,
          clientGone: disconnect.signal,
        }),
      );
    } finally {
      disconnect.release();
    }
  });

  // The event wherever it is, for a reader who may see it (404 otherwise, as the spec says).
  v3.get("/events/:eventId", auth, async (c) => {
    const eventId = eventIdParam(c);
    const stored = await deps.eventStore.getEvent(eventId);
    if (!stored) throw notFound("Event not found");
    try {
      return c.json(
        await deps.roomEvents.reads.event(reader(c.get("session")), stored.roomId, eventId),
      );
    } catch (error) {
      // Not being in the room is "not found" here: the room is not named by the client.
      if (error instanceof MatrixError && error.errcode === "M_FORBIDDEN") {
        throw notFound("Event not found");
      }
      throw error;
    }
  });

  v3.get("/initialSync", auth, async (c) => {
    const query = readQuery(c, initialSyncQuery);
    return c.json(
      await snapshots.initialSync(reader(c.get("session")), {
        limit: query.limit === undefined ? undefined : Number(query.limit),
        archived: query.archived === "true",
      }),
    );
  });

  v3.get("/rooms/:roomId/initialSync", auth, async (c) => {
    const roomId = roomIdParam(c);
    const query = readQuery(c, roomInitialSyncQuery);
    return c.json(
      await snapshots.roomInitialSync(reader(c.get("session")), roomId, {
        limit: query.limit === undefined ? undefined : Number(query.limit),
      }),
    );
  });

  return { v3: v3 as unknown as Hono };
}
