/** Typing, receipts, read markers and presence. */
import { Hono } from "hono";
import { z } from "zod";
import { forbidden, invalidParam } from "../../domain/errors.ts";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../json_body.ts";
import type { ClientArea } from "./client_api.ts";
import { rateLimited } from "./rate_limit_middleware.ts";
import { type ClientEnv, requireSession } from "./session_middleware.ts";
import { eventIdParam, pathParam, roomIdParam, userIdParam } from "./path_params.ts";

const typingBody = z.object({
  typing: z.boolean(),
  timeout: z.number().int().min(0).optional(),
});
const receiptBody = z.object({ thread_id: z.string().min(1).max(255).optional() }).passthrough();
const receiptType = z.enum(["m.read", "m.read.private", "m.fully_read"]);
const eventId = z.string().startsWith("$").max(255);
const readMarkersBody = z.object({
  "m.fully_read": eventId.optional(),
  "m.read": eventId.optional(),
  "m.read.private": eventId.optional(),
});
const presenceBody = z.object({
  presence: z.enum(["online", "unavailable", "offline"]),
  status_msg: z.string().nullable().optional(),
});

/** The typing, receipts, read markers and presence area. */
export function ephemeralArea(deps: AppDeps): ClientArea {
  const v3 = new Hono<ClientEnv>();
  const session = requireSession(deps.sessions);
  const receiptLimit = rateLimited(deps, "receipt");

  v3.put("/rooms/:roomId/typing/:userId", session, rateLimited(deps, "typing"), async (c) => {
    const roomId = roomIdParam(c);
    const userId = userIdParam(c);
    if (userId !== c.get("session").userId) throw forbidden("Cannot set typing for another user");
    const body = await readJsonBody(c, typingBody);
    await deps.typing.setTyping(userId, roomId, body.typing, body.timeout);
    return c.json({});
  });

  v3.post("/rooms/:roomId/receipt/:receiptType/:eventId", session, receiptLimit, async (c) => {
    const roomId = roomIdParam(c);
    const parsed = receiptType.safeParse(pathParam(c, "receiptType"));
    if (!parsed.success) {
      throw invalidParam("Unknown receipt type");
    }
    const target = eventIdParam(c);
    // Some clients send no body at all; the spec's body is optional in practice.
    const body = await readJsonBody(c, receiptBody, { emptyAsObject: true });
    await deps.receipts.sendReceipt(
      c.get("session").userId,
      roomId,
      parsed.data,
      target,
      body.thread_id,
    );
    return c.json({});
  });

  v3.post("/rooms/:roomId/read_markers", session, receiptLimit, async (c) => {
    const roomId = roomIdParam(c);
    const body = await readJsonBody(c, readMarkersBody, { emptyAsObject: true });
    await deps.receipts.setReadMarkers(c.get("session").userId, roomId, {
      fullyRead: body["m.fully_read"],
      read: body["m.read"],
      readPrivate: body["m.read.private"],
    });
    return c.json({});
  });

  v3.put("/presence/:userId/status", session, rateLimited(deps, "presence"), async (c) => {
    const userId = userIdParam(c);
    const body = await readJsonBody(c, presenceBody);
    await deps.presence.setStatus(c.get("session").userId, userId, body.presence, body.status_msg);
    return c.json({});
  });

  v3.get("/presence/:userId/status", session, async (c) => {
    return c.json(await deps.presence.status(c.get("session").userId, userIdParam(c)));
  });

  return { v3: v3 as unknown as Hono };
}
