/**
 * Room reads for other servers (Server-Server API, under `/_matrix/federation/v1`):
 * `GET /event/{eventId}`, `GET /state/{roomId}?event_id=`, `GET /state_ids/{roomId}?event_id=`,
 * `GET /event_auth/{roomId}/{eventId}`, `GET /backfill/{roomId}?v=&limit=`,
 * `POST /get_missing_events/{roomId}` and `GET /timestamp_to_event/{roomId}?ts=&dir=`.
 *
 * Every route verifies the X-Matrix signature (`serverAuth`), validates its input (400 before
 * any read), and leaves the rest to domain/federation/server_reads.ts: 403 when the room's
 * server ACL denies the origin or the origin is not in the room, events out through the read
 * pipeline.
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import { ServerReads } from "../../domain/federation/server_reads.ts";
import { invalidParam, missingParam } from "../../domain/errors.ts";
import { parseEventId, requireValid } from "../../domain/protocol/identifiers.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody, readQuery } from "../json_body.ts";
import { eventIdParam, roomIdParam } from "../client/path_params.ts";
import { MAX_FEDERATION_BODY_BYTES, originOf, serverAuth } from "./server_auth.ts";

/** Most `v` event IDs one /backfill may name, and `earliest/latest_events` entries. */
const MAX_EVENT_IDS = 100;

const eventId = z.string().min(1).max(255).refine(
  (s) => parseEventId(s).ok,
  "must be a valid event ID",
);
const stateQuery = z.object({ event_id: eventId });
const timestampQuery = z.object({
  ts: z.string().regex(/^\d{1,16}$/, "must be a timestamp in milliseconds").transform(Number),
  dir: z.enum(["f", "b"]),
});
const missingEventsBody = z.object({
  limit: z.number().int().min(0).max(1_000_000).optional(),
  min_depth: z.number().int().min(0).optional(),
  // Required by the spec, but Synapse takes a missing list as empty and SyTest relies on it.
  earliest_events: z.array(eventId).max(MAX_EVENT_IDS).default([]),
  latest_events: z.array(eventId).max(MAX_EVENT_IDS).default([]),
});

/** The room-read routes, signature-checked. */
export function federationEventReadsApp(deps: AppDeps): Hono {
  const app = new Hono();
  const reads = new ServerReads({
    store: deps.eventStore,
    pipeline: deps.readPipeline,
    relations: deps.relations,
    serverName: deps.config.serverName,
    now: deps.now ?? Date.now,
  });
  const auth = serverAuth(deps);
  const v1 = "/_matrix/federation/v1";

  app.get(`${v1}/event/:eventId`, auth, async (c) => {
    return c.json(await reads.event(originOf(c), eventIdParam(c)));
  });

  app.get(`${v1}/state/:roomId`, auth, async (c) => {
    const query = readQuery(c, stateQuery);
    return c.json(await reads.state(originOf(c), roomIdParam(c), query.event_id));
  });

  app.get(`${v1}/state_ids/:roomId`, auth, async (c) => {
    const query = readQuery(c, stateQuery);
    return c.json(await reads.stateIds(originOf(c), roomIdParam(c), query.event_id));
  });

  app.get(`${v1}/event_auth/:roomId/:eventId`, auth, async (c) => {
    return c.json(await reads.eventAuth(originOf(c), roomIdParam(c), eventIdParam(c)));
  });

  app.get(`${v1}/backfill/:roomId`, auth, async (c) => {
    const roomId = roomIdParam(c);
    const from = backfillFrom(c);
    const limit = backfillLimit(c);
    return c.json(await reads.backfill(originOf(c), roomId, from, limit));
  });

  app.post(`${v1}/get_missing_events/:roomId`, auth, async (c) => {
    const roomId = roomIdParam(c);
    const body = await readJsonBody(c, missingEventsBody, { maxBytes: MAX_FEDERATION_BODY_BYTES });
    return c.json(
      await reads.missingEvents(originOf(c), roomId, {
        earliestEvents: body.earliest_events,
        latestEvents: body.latest_events,
        limit: body.limit,
        minDepth: body.min_depth,
      }),
    );
  });

  app.get(`${v1}/timestamp_to_event/:roomId`, auth, async (c) => {
    const roomId = roomIdParam(c);
    const query = readQuery(c, timestampQuery);
    return c.json(await reads.timestampToEvent(originOf(c), roomId, query.ts, query.dir));
  });

  return app;
}

/** The `v` parameters of /backfill (one per event ID). */
function backfillFrom(c: Context): string[] {
  const ids = (c.req.queries("v") ?? []).filter((v) => v !== "");
  if (ids.length === 0) throw missingParam("Missing query parameter v");
  if (ids.length > MAX_EVENT_IDS) throw invalidParam(`At most ${MAX_EVENT_IDS} event IDs in v`);
  for (const id of ids) requireValid(parseEventId(id));
  return ids;
}

/** The required `limit` of /backfill. */
function backfillLimit(c: Context): number {
  const raw = c.req.query("limit");
  if (raw === undefined) throw missingParam("Missing query parameter limit");
  if (!/^\d{1,9}$/.test(raw)) throw invalidParam("limit must be a non-negative integer");
  return Number(raw);
}
