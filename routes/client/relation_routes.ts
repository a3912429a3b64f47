/**
 * Event relationships under `/_matrix/client/v1`: `/relations/{eventId}` (with `/{relType}` and
 * `/{relType}/{eventType}`), `/threads` and `/timestamp_to_event`. Also at the unstable paths
 * Synapse serves for threads (MSC3856) and timestamp_to_event (MSC3030). The reads live in
 * domain/room_events/relation_reads.ts; every event goes out through the read pipeline.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { z } from "zod";
import { wholeNumberQuery } from "../query_numbers.ts";
import { RelationReads } from "../../domain/room_events/relation_reads.ts";
import type { AppDeps } from "../deps.ts";
import { readQuery } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { eventIdParam, pathParam, roomIdParam } from "./path_params.ts";
import { MAX_PAGE_EVENTS } from "./room_event_routes.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

const limitParam = (fallback: number, max: number) =>
  wholeNumberQuery().optional().transform((n) => Math.max(1, Math.min(n ?? fallback, max)));

const booleanParam = z.enum(["true", "false"]).transform((v) => v === "true").optional();

const relationsQuery = z.object({
  from: z.string().max(256).optional(),
  to: z.string().max(256).optional(),
  // Synapse's default page; clients ask for what they show.
  limit: limitParam(5, MAX_PAGE_EVENTS),
  dir: z.enum(["b", "f"]).optional(),
  recurse: booleanParam,
  // MSC3981's unstable name, which clients sent before v1.10.
  "org.matrix.msc3981.recurse": booleanParam,
});

const threadsQuery = z.object({
  include: z.enum(["all", "participated"]).optional(),
  from: z.string().max(256).optional(),
  limit: limitParam(5, 100),
});

const timestampQuery = z.object({
  ts: z.string().regex(/^\d{1,15}$/, "must be a timestamp in milliseconds").transform(Number),
  dir: z.enum(["f", "b"]),
});

/** The relations area (v1 only: these endpoints have no v3 form). */
export function relationArea(deps: AppDeps): ClientArea {
  const v1 = new Hono<ClientEnv>();
  const unstable = new Hono<ClientEnv>();
  const auth = requireSession(deps.sessions);
  const reads = new RelationReads({
    store: deps.eventStore,
    relations: deps.relations,
    pipeline: deps.readPipeline,
  });
  const reader = (c: Context<ClientEnv>) => ({
    userId: c.get("session").userId,
    deviceId: c.get("session").deviceId,
  });

  const relations = async (c: Context<ClientEnv>, relType?: string, eventType?: string) => {
    const roomId = roomIdParam(c);
    const eventId = eventIdParam(c);
    const query = readQuery(c, relationsQuery);
    const recurse = query.recurse ?? query["org.matrix.msc3981.recurse"];
    const page = await reads.relations(reader(c), roomId, eventId, {
      relType,
      eventType,
      from: query.from,
      to: query.to,
      dir: query.dir ?? "b",
      limit: query.limit,
      recurse: recurse === true,
    });
    // recursion_depth only answers a request that named `recurse`.
    if (recurse === undefined) delete page.recursion_depth;
    else page.recursion_depth ??= 1;
    return c.json(page);
  };
  v1.get("/rooms/:roomId/relations/:eventId", auth, (c) => relations(c));
  v1.get(
    "/rooms/:roomId/relations/:eventId/:relType",
    auth,
    (c) => relations(c, pathParam(c, "relType")),
  );
  v1.get(
    "/rooms/:roomId/relations/:eventId/:relType/:eventType",
    auth,
    (c) => relations(c, pathParam(c, "relType"), pathParam(c, "eventType")),
  );

  const threads = async (c: Context<ClientEnv>) => {
    const roomId = roomIdParam(c);
    const query = readQuery(c, threadsQuery);
    return c.json(
      await reads.threads(reader(c), roomId, {
        include: query.include ?? "all",
        from: query.from,
        limit: query.limit,
      }),
    );
  };
  v1.get("/rooms/:roomId/threads", auth, threads);
  unstable.get("/org.matrix.msc3856/rooms/:roomId/threads", auth, threads);

  const timestampToEvent = async (c: Context<ClientEnv>) => {
    const roomId = roomIdParam(c);
    const query = readQuery(c, timestampQuery);
    return c.json(await reads.timestampToEvent(reader(c), roomId, query.ts, query.dir));
  };
  v1.get("/rooms/:roomId/timestamp_to_event", auth, timestampToEvent);
  unstable.get("/org.matrix.msc3030/rooms/:roomId/timestamp_to_event", auth, timestampToEvent);

  return { v1: v1 as unknown as Hono, unstable: unstable as unknown as Hono };
}
