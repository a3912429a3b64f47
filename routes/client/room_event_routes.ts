/**
 * Sending and reading room events: /send, /state, /redact, /event, /context and /messages.
 * Validation happens here; the rules live in domain/room_events.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { z } from "zod";
import { wholeNumberQuery } from "../query_numbers.ts";
import { invalidParam } from "../../domain/errors.ts";
import { parseRoomEventFilterParam } from "../../domain/protocol/event_filter.ts";
import { eventIdParam, roomIdParam } from "./path_params.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody, readQuery } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited, takeRateLimit } from "./rate_limit_middleware.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";

/** Any JSON object: event content is the sender's business, beyond its size. */
const contentSchema = z.record(z.string(), z.unknown());
const redactBodySchema = z.object({ reason: z.string().max(4096).optional() });

/**
 * Most events one /messages or /context page returns. The reads below list the room log with
 * some over-fetch (the timeline lists `limit + 10`), and a KV list page holds at most 1,000
 * entries: 991 to 1,000 answered 500. Half the page cap leaves room for that; clients ask for
 * 10 to 100 (Synapse accepts up to 1,000, but its database has no page cap).
 */
export const MAX_PAGE_EVENTS = 500;

const limitParam = (fallback: number) =>
  wholeNumberQuery().optional().transform((n) => Math.min(n ?? fallback, MAX_PAGE_EVENTS));

const messagesQuery = z.object({
  from: z.string().max(256).optional(),
  to: z.string().max(256).optional(),
  dir: z.enum(["b", "f"]),
  limit: limitParam(10),
  filter: z.string().max(16_384).optional(),
});
const contextQuery = z.object({
  limit: limitParam(10),
  filter: z.string().max(16_384).optional(),
});
const stateQuery = z.object({ format: z.enum(["content", "event"]).optional() });

/** Event types and state keys from the path: bounded, and event types non-empty. */
function eventTypeParam(c: Context): string {
  const type = c.req.param("eventType") ?? "";
  if (type === "" || type.length > 255) throw invalidParam("Invalid event type");
  return type;
}

function stateKeyParam(c: Context): string {
  const key = c.req.param("stateKey") ?? "";
  if (key.length > 255) throw invalidParam("State key is too long");
  return key;
}

function txnIdParam(c: Context): string {
  const txnId = c.req.param("txnId") ?? "";
  if (txnId === "" || txnId.length > 255) throw invalidParam("Invalid transaction ID");
  return txnId;
}

/** The room events area. */
export function roomEventArea(deps: AppDeps): ClientArea {
  const app = new Hono<ClientEnv>();
  const auth = requireSession(deps.sessions);
  const { roomEvents } = deps;
  const reader = (c: Context<ClientEnv>) => ({
    userId: c.get("session").userId,
    deviceId: c.get("session").deviceId,
  });

  app.put("/rooms/:roomId/send/:eventType/:txnId", auth, rateLimited(deps, "send"), async (c) => {
    const roomId = roomIdParam(c);
    const type = eventTypeParam(c);
    const txnId = txnIdParam(c);
    const content = await readJsonBody(c, contentSchema) as JsonObject;
    const session = c.get("session");
    const eventId = await roomEvents.sending.sendTransactional({
      userId: session.userId,
      deviceId: session.deviceId,
      txnId,
      roomId,
      type,
      content,
    });
    return c.json({ event_id: eventId });
  });

  // The legacy form without a transaction ID (r0 clients, SyTest): no retry protection.
  app.post("/rooms/:roomId/send/:eventType", auth, rateLimited(deps, "send"), async (c) => {
    const roomId = roomIdParam(c);
    const type = eventTypeParam(c);
    const content = await readJsonBody(c, contentSchema) as JsonObject;
    const eventId = await roomEvents.sending.sendUntracked({
      userId: c.get("session").userId,
      roomId,
      type,
      content,
    });
    return c.json({ event_id: eventId });
  });

  app.put("/rooms/:roomId/redact/:eventId/:txnId", auth, rateLimited(deps, "send"), async (c) => {
    const roomId = roomIdParam(c);
    const redacts = eventIdParam(c);
    const txnId = txnIdParam(c);
    const body = await readJsonBody(c, redactBodySchema, { emptyAsObject: true });
    const session = c.get("session");
    const content: JsonObject = body.reason === undefined ? {} : { reason: body.reason };
    const eventId = await roomEvents.sending.sendTransactional({
      userId: session.userId,
      deviceId: session.deviceId,
      txnId,
      roomId,
      type: "m.room.redaction",
      content,
      redacts,
    });
    return c.json({ event_id: eventId });
  });

  const putState = async (c: Context<ClientEnv>, key: string) => {
    const roomId = roomIdParam(c);
    const type = eventTypeParam(c);
    const content = await readJsonBody(c, contentSchema) as JsonObject;
    const userId = c.get("session").userId;
    // Member events follow the membership rules (who names a restricted join's authoriser),
    // as Synapse routes them through update_membership.
    if (type === "m.room.member") {
      // An invite sent as state counts against the invitee's limit, as through /invite.
      if (content.membership === "invite") {
        await takeRateLimit(deps, c, "invited", `user:${key}`);
      }
      const memberEventId = await deps.rooms.membership.putMemberState(
        userId,
        roomId,
        key,
        content,
      );
      return c.json({ event_id: memberEventId });
    }
    // A canonical alias may only name aliases of this room (spec: 400 M_BAD_ALIAS).
    if (type === "m.room.canonical_alias" && key === "") {
      await deps.rooms.aliases.checkCanonicalAlias(roomId, content);
    }
    // Caps on the room's state bytes (per sender and per room) before anything is sent.
    await deps.stateQuota.check({ userId, roomId, type, stateKey: key, content });
    const eventId = await roomEvents.sending.sendState({
      userId,
      roomId,
      type,
      stateKey: key,
      content,
    });
    return c.json({ event_id: eventId });
  };
  const stateLimit = rateLimited(deps, "state");
  app.put(
    "/rooms/:roomId/state/:eventType/:stateKey",
    auth,
    stateLimit,
    (c) => putState(c, stateKeyParam(c)),
  );
  app.put("/rooms/:roomId/state/:eventType/", auth, stateLimit, (c) => putState(c, ""));
  app.put("/rooms/:roomId/state/:eventType", auth, stateLimit, (c) => putState(c, ""));

  app.get("/rooms/:roomId/state", auth, async (c) => {
    return c.json(await roomEvents.reads.state(reader(c), roomIdParam(c)));
  });

  const getState = async (c: Context<ClientEnv>, key: string) => {
    const roomId = roomIdParam(c);
    const type = eventTypeParam(c);
    const { format } = readQuery(c, stateQuery);
    const event = await roomEvents.reads.stateEvent(reader(c), roomId, type, key);
    return c.json(format === "event" ? event : event.content);
  };
  app.get("/rooms/:roomId/state/:eventType/:stateKey", auth, (c) => getState(c, stateKeyParam(c)));
  app.get("/rooms/:roomId/state/:eventType/", auth, (c) => getState(c, ""));
  app.get("/rooms/:roomId/state/:eventType", auth, (c) => getState(c, ""));

  app.get("/rooms/:roomId/event/:eventId", auth, async (c) => {
    const roomId = roomIdParam(c);
    const eventId = eventIdParam(c);
    return c.json(await roomEvents.reads.event(reader(c), roomId, eventId));
  });

  app.get("/rooms/:roomId/context/:eventId", auth, async (c) => {
    const roomId = roomIdParam(c);
    const eventId = eventIdParam(c);
    const query = readQuery(c, contextQuery);
    const filter = parseRoomEventFilterParam(query.filter);
    // query.limit is clamped already; a filter may only lower it.
    const limit = Math.min(query.limit, filter.limit ?? query.limit);
    return c.json(await roomEvents.reads.context(reader(c), roomId, eventId, limit, filter));
  });

  app.get("/rooms/:roomId/messages", auth, async (c) => {
    const roomId = roomIdParam(c);
    const query = readQuery(c, messagesQuery);
    const filter = parseRoomEventFilterParam(query.filter);
    const page = await roomEvents.reads.messages(reader(c), roomId, {
      from: query.from,
      to: query.to,
      dir: query.dir,
      limit: Math.max(1, Math.min(query.limit, filter.limit ?? query.limit)),
      filter,
    });
    return c.json(page);
  });

  return { v3: app as unknown as Hono };
}
