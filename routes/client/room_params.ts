/** Path parameters of the rooms area: room IDs and aliases, validated after percent-decoding. */
import type { Context } from "hono";
import { invalidParam } from "../../domain/errors.ts";
import { parseRoomAlias, parseRoomId, requireValid } from "../../domain/identifiers.ts";
import type { RoomVisibility } from "../../domain/ports/room_directory_store.ts";

/** A path parameter; Hono has already percent-decoded it (once: `%253A` stays `%3A`). */
function param(c: Context, name: string): string {
  const value = c.req.param(name);
  if (value === undefined) throw invalidParam(`Missing path parameter ${name}`);
  return value;
}

/** The `roomId` path parameter, which must be a room ID. */
export function roomIdParam(c: Context, name = "roomId"): string {
  const roomId = param(c, name);
  requireValid(parseRoomId(roomId));
  return roomId;
}

/** A room alias path parameter. */
export function roomAliasParam(c: Context, name = "roomAlias"): string {
  const alias = param(c, name);
  requireValid(parseRoomAlias(alias));
  return alias;
}

/** A room ID or alias path parameter (`/join/{roomIdOrAlias}`, `/knock/{roomIdOrAlias}`). */
export function roomIdOrAliasParam(c: Context, name = "roomIdOrAlias"): string {
  const value = param(c, name);
  if (value.startsWith("#")) requireValid(parseRoomAlias(value));
  else requireValid(parseRoomId(value));
  return value;
}

/** Check a directory visibility value. */
export function isVisibility(value: unknown): value is RoomVisibility {
  return value === "public" || value === "private";
}
