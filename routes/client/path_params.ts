/**
 * Path parameters of the client API, validated after Hono's percent-decoding (done once, so
 * `%253A` stays `%3A`): an invalid ID is 400 M_INVALID_PARAM before any work is done.
 */
import type { Context } from "hono";
import { invalidParam } from "../../domain/errors.ts";
import {
  parseEventId,
  parseRoomAlias,
  parseRoomId,
  parseUserId,
  requireValid,
} from "../../domain/protocol/identifiers.ts";

/**
 * Longest path parameter, in bytes: the spec's limit for IDs and event types, and well inside
 * KV's 2 KiB keys, which every parameter may end up in (a longer one failed inside the read).
 */
export const MAX_PATH_PARAM_BYTES = 255;

/** A non-empty path parameter of at most MAX_PATH_PARAM_BYTES. */
export function pathParam(c: Context, name: string): string {
  const value = c.req.param(name);
  if (value === undefined || value === "") throw invalidParam(`Missing path parameter ${name}`);
  if (new TextEncoder().encode(value).byteLength > MAX_PATH_PARAM_BYTES) {
    throw invalidParam(`Path parameter ${name} is longer than ${MAX_PATH_PARAM_BYTES} bytes`);
  }
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

/** A room alias path parameter. */
export function roomAliasParam(c: Context, name = "roomAlias"): string {
  const value = pathParam(c, name);
  requireValid(parseRoomAlias(value));
  return value;
}

/** A room ID or alias path parameter (`/join/{roomIdOrAlias}`, `/knock/{roomIdOrAlias}`). */
export function roomIdOrAliasParam(c: Context, name = "roomIdOrAlias"): string {
  const value = pathParam(c, name);
  if (value.startsWith("#")) requireValid(parseRoomAlias(value));
  else requireValid(parseRoomId(value));
  return value;
}
