/**
 * Simplified sliding sync (MSC4186): `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`
 * (the path clients call: matrix-js-sdk, Element X) and the same handler at the stable path the
 * MSC names, `POST /_matrix/client/v4/sync`. The body is validated here with its limits (lists,
 * ranges, required_state, subscriptions, timeline_limit) answered as 400s before any work;
 * `pos` and `timeout` are read from the query (as clients send them) or from the body.
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import { invalidParam } from "../../domain/errors.ts";
import { MAX_POS_LENGTH } from "../../domain/sliding_sync/connection.ts";
import { extensionsRequestSchema } from "../../domain/sliding_sync/extensions.ts";
import {
  MAX_REQUIRED_STATE,
  MAX_SLIDING_TIMELINE_LIMIT,
  type RoomConfig,
  roomConfig,
} from "../../domain/sliding_sync/room_config.ts";
import type { SlidingRoomFilters } from "../../domain/sliding_sync/room_list.ts";
import {
  type SlidingListRequest,
  type SlidingSyncService,
} from "../../domain/sliding_sync/sliding_sync_service.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody, readQuery } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";
import { clientDisconnect, longPollTimeout } from "./sync_routes.ts";

/** Most lists one request may hold (MSC4186). */
export const MAX_LISTS = 100;
/** Most ranges one list may hold. */
export const MAX_RANGES = 10;
/** Most room subscriptions one request may add. */
export const MAX_NEW_SUBSCRIPTIONS = 200;
/** Most rooms one request may unsubscribe from. */
export const MAX_UNSUBSCRIBE = 1_000;
/** Largest range index accepted (a range past the end of a list is simply empty). */
const MAX_INDEX = 1_000_000_000;
/** The MSC's unstable prefix, below `/_matrix/client/unstable`. */
const UNSTABLE_PREFIX = "/org.matrix.simplified_msc3575";

const opaqueId = z.string().min(1).max(64).regex(/^[A-Za-z0-9._~-]+$/, "not an opaque identifier");
const roomId = z.string().min(1).max(255);
const requiredState = z.array(z.tuple([z.string().max(255), z.string().max(1024)]))
  .max(MAX_REQUIRED_STATE, `at most ${MAX_REQUIRED_STATE} required_state entries`);
const timelineLimit = z.number().int().min(0)
  .max(MAX_SLIDING_TIMELINE_LIMIT, `timeline_limit is at most ${MAX_SLIDING_TIMELINE_LIMIT}`);
const range = z.tuple([
  z.number().int().min(0).max(MAX_INDEX),
  z.number().int().min(0).max(MAX_INDEX),
]).refine(([start, end]) => start <= end, "a range's start must not be after its end");
const roomTypes = z.array(z.string().max(255).nullable()).max(100);
const filters = z.object({
  is_dm: z.boolean().nullish(),
  is_encrypted: z.boolean().nullish(),
  is_invite: z.boolean().nullish(),
  /** The MSC text's spelling; Synapse and clients send `is_invite`. */
  is_invited: z.boolean().nullish(),
  room_types: roomTypes.nullish(),
  not_room_types: roomTypes.nullish(),
  spaces: z.array(roomId).max(100).nullish(),
});
const roomParams = {
  required_state: requiredState.nullish(),
  timeline_limit: timelineLimit.nullish(),
};
const list = z.object({
  ...roomParams,
  ranges: z.array(range).max(MAX_RANGES, `at most ${MAX_RANGES} ranges per list`).nullish(),
  /** The MSC's newer single range. */
  range: range.nullish(),
  filters: filters.nullish(),
});
const timeoutField = z.number().int().min(0);
const setPresence = z.enum(["offline", "online", "unavailable"]);

const body = z.object({
  conn_id: opaqueId.nullish(),
  pos: z.string().max(MAX_POS_LENGTH).nullish(),
  timeout: timeoutField.nullish(),
  set_presence: setPresence.nullish(),
  lists: z.record(opaqueId, list).nullish(),
  room_subscriptions: z.record(roomId, z.object(roomParams)).nullish(),
  unsubscribe_rooms: z.array(roomId).max(MAX_UNSUBSCRIBE).nullish(),
  extensions: extensionsRequestSchema.nullish(),
});

const query = z.object({
  pos: z.string().max(MAX_POS_LENGTH).optional(),
  timeout: z.string().regex(/^\d{1,9}$/, "timeout must be a whole number of milliseconds")
    .optional(),
  set_presence: setPresence.optional(),
});

/** The sliding sync area: the unstable path and the MSC's stable `/v4` path. */
export function slidingSyncArea(
  deps: AppDeps,
  service: Pick<SlidingSyncService, "sync"> | undefined,
): ClientArea {
  if (!service) return {};
  const auth = requireSession(deps.sessions);
  const handler = async (c: Context<ClientEnv>) => {
    const session = c.get("session");
    const q = readQuery(c, query);
    const req = await readJsonBody(c, body, { emptyAsObject: true });
    const lists = req.lists ?? {};
    if (Object.keys(lists).length > MAX_LISTS) {
      throw invalidParam(`At most ${MAX_LISTS} lists per request`);
    }
    const subscriptions = req.room_subscriptions ?? {};
    if (Object.keys(subscriptions).length > MAX_NEW_SUBSCRIPTIONS) {
      throw invalidParam(`At most ${MAX_NEW_SUBSCRIPTIONS} room subscriptions per request`);
    }
    const timeout = q.timeout ?? (req.timeout != null ? String(req.timeout) : undefined);
    const disconnect = clientDisconnect(c.req.raw, deps.shutdown);
    try {
      const response = await service.sync({
        userId: session.userId,
        deviceId: session.deviceId,
        connId: req.conn_id ?? "",
        pos: q.pos || req.pos || undefined,
        timeoutMs: longPollTimeout(deps, timeout),
        lists: Object.fromEntries(
          Object.entries(lists).map(([name, l]) => [name, listRequest(l)]),
        ),
        roomSubscriptions: Object.fromEntries(
          Object.entries(subscriptions).map(([id, s]) => [id, config(s)]),
        ),
        unsubscribeRooms: req.unsubscribe_rooms ?? [],
        extensions: req.extensions ?? undefined,
        setPresence: q.set_presence ?? req.set_presence ?? undefined,
        clientGone: disconnect.signal,
      });
      return c.json(response);
    } finally {
      disconnect.release();
    }
  };
  const unstable = new Hono<ClientEnv>();
  unstable.post(`${UNSTABLE_PREFIX}/sync`, auth, handler);
  const v4 = new Hono<ClientEnv>();
  v4.post("/sync", auth, handler);
  return { unstable: unstable as unknown as Hono, v4: v4 as unknown as Hono };
}

type RoomParams = { required_state?: [string, string][] | null; timeline_limit?: number | null };

function config(params: RoomParams): RoomConfig {
  return roomConfig(params.required_state ?? [], params.timeline_limit ?? 0);
}

function listRequest(l: z.infer<typeof list>): SlidingListRequest {
  const ranges: [number, number][] = l.ranges ?? (l.range ? [l.range] : [[0, MAX_INDEX]]);
  const f = l.filters;
  const out: SlidingRoomFilters = {};
  if (f) {
    if (f.is_dm != null) out.is_dm = f.is_dm;
    if (f.is_encrypted != null) out.is_encrypted = f.is_encrypted;
    const invite = f.is_invite ?? f.is_invited;
    if (invite != null) out.is_invite = invite;
    if (f.room_types != null) out.room_types = f.room_types;
    if (f.not_room_types != null) out.not_room_types = f.not_room_types;
    if (f.spaces != null) out.spaces = f.spaces;
  }
  return { ranges, filters: f ? out : undefined, config: config(l) };
}
