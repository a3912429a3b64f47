/** Path parameters of the user-data areas (user, room and event IDs), checked after decoding. */
import type { Context } from "hono";
import { invalidParam } from "../../domain/errors.ts";
import { parseEventId, parseRoomId, parseUserId, requireValid } from "../../domain/identifiers.ts";

/** A path parameter, already percent-decoded by Hono. */
export function pathParam(c: Context, name: string): string {
  const value = c.req.param(name);
  if (value === undefined || value === "") throw invalidParam(`Missing path parameter ${name}`);
  return value;
}

/** A user ID path parameter. */
export function userIdParam(c: Context, name = "userId"): string {
  const value = pathParam(c, name);
  requireValid(parseUserId(value));
  return value;
}

/** A room ID path parameter. */
export function roomIdParam(c: Context, name = "roomId"): string {
  const value = pathParam(c, name);
  requireValid(parseRoomId(value));
  return value;
}

/** An event ID path parameter. */
export function eventIdParam(c: Context, name = "eventId"): string {
  const value = pathParam(c, name);
  requireValid(parseEventId(value));
  return value;
}
