/**
 * The spec's event filters (`Filter`, `RoomFilter`, `RoomEventFilter`, `EventFilter`): zod
 * schemas to parse them at the edge, and pure matching. Shared by /messages, /context and
 * /sync, so every endpoint filters the same way.
 */
import { z } from "zod";
import { MatrixError } from "../errors.ts";
import { isValidRoomId, isValidUserId } from "./identifiers.ts";
import { isJsonObject } from "./json.ts";

const stringList = z.array(z.string().max(512)).max(1024);
// Room and sender lists hold IDs (as Synapse's filter schema checks): a filter naming something
// else could never match, and is a client's mistake worth reporting.
const roomIdList = z.array(z.string().max(255).refine(isValidRoomId, "must be a room ID"))
  .max(1024);
const userIdList = z.array(z.string().max(255).refine(isValidUserId, "must be a user ID"))
  .max(1024);

/** `EventFilter`: account data and presence filters. */
export const eventFilterSchema = z.object({
  limit: z.number().int().min(0).optional(),
  types: stringList.optional(),
  not_types: stringList.optional(),
  senders: userIdList.optional(),
  not_senders: userIdList.optional(),
});

/** `RoomEventFilter`: timeline, state and ephemeral filters, and /messages' `filter`. */
export const roomEventFilterSchema = eventFilterSchema.extend({
  rooms: roomIdList.optional(),
  not_rooms: roomIdList.optional(),
  contains_url: z.boolean().optional(),
  lazy_load_members: z.boolean().optional(),
  include_redundant_members: z.boolean().optional(),
  unread_thread_notifications: z.boolean().optional(),
});

/** `RoomFilter`: what /sync returns per room. */
export const roomFilterSchema = z.object({
  rooms: roomIdList.optional(),
  not_rooms: roomIdList.optional(),
  include_leave: z.boolean().optional(),
  timeline: roomEventFilterSchema.optional(),
  state: roomEventFilterSchema.optional(),
  ephemeral: roomEventFilterSchema.optional(),
  account_data: roomEventFilterSchema.optional(),
});

/** A whole `Filter`, as uploaded to /user/{userId}/filter or passed inline to /sync. */
export const filterSchema = z.object({
  event_fields: z.array(z.string().max(512)).max(1024).optional(),
  event_format: z.enum(["client", "federation"]).optional(),
  presence: eventFilterSchema.optional(),
  account_data: eventFilterSchema.optional(),
  room: roomFilterSchema.optional(),
});

/** A parsed `EventFilter`. */
export type EventFilter = z.infer<typeof eventFilterSchema>;
/** A parsed `RoomEventFilter`. */
export type RoomEventFilter = z.infer<typeof roomEventFilterSchema>;
/** A parsed `RoomFilter`. */
export type RoomFilter = z.infer<typeof roomFilterSchema>;
/** A parsed `Filter`. */
export type Filter = z.infer<typeof filterSchema>;

/** What filtering reads of an event (a PDU, a RoomEvent or a client event all fit). */
export interface FilterableEvent {
  type: string;
  sender: string;
  room_id?: string;
  content?: unknown;
}

/**
 * Parse a JSON-encoded `RoomEventFilter` from a query string (/messages, /context). Bad JSON or
 * a wrong shape is M_INVALID_PARAM, never a 500.
 */
export function parseRoomEventFilterParam(json: string | undefined): RoomEventFilter {
  if (json === undefined || json === "") return {};
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch {
    throw new MatrixError("M_INVALID_PARAM", 400, "filter is not valid JSON");
  }
  const result = roomEventFilterSchema.safeParse(data);
  if (!result.success) {
    const issue = result.error.issues[0];
    const path = issue.path.map(String).join(".");
    throw new MatrixError(
      "M_INVALID_PARAM",
      400,
      `Invalid filter${path ? ` at '${path}'` : ""}: ${issue.message}`,
    );
  }
  return result.data;
}

/** Whether an event passes an `EventFilter`'s type and sender rules (exclusions win). */
export function matchesEventFilter(filter: EventFilter, event: FilterableEvent): boolean {
  if (filter.not_senders?.includes(event.sender)) return false;
  if (filter.senders !== undefined && !filter.senders.includes(event.sender)) return false;
  if (filter.not_types?.some((pattern) => globMatches(pattern, event.type))) return false;
  if (filter.types !== undefined && !filter.types.some((p) => globMatches(p, event.type))) {
    return false;
  }
  return true;
}

/** Whether an event passes a `RoomEventFilter`: types, senders, rooms and `contains_url`. */
export function matchesRoomEventFilter(filter: RoomEventFilter, event: FilterableEvent): boolean {
  if (!matchesEventFilter(filter, event)) return false;
  if (event.room_id !== undefined) {
    if (filter.not_rooms?.includes(event.room_id)) return false;
    if (filter.rooms !== undefined && !filter.rooms.includes(event.room_id)) return false;
  }
  if (filter.contains_url !== undefined) {
    const hasUrl = isJsonObject(event.content) && typeof event.content.url === "string";
    if (hasUrl !== filter.contains_url) return false;
  }
  return true;
}

/** Whether a room passes the `rooms`/`not_rooms` rules of a filter. */
export function roomAllowed(filter: { rooms?: string[]; not_rooms?: string[] }, roomId: string) {
  if (filter.not_rooms?.includes(roomId)) return false;
  return filter.rooms === undefined || filter.rooms.includes(roomId);
}

const globCache = new Map<string, RegExp>();

/** `*` in a filter's type pattern matches any run of characters, as the spec says. */
export function globMatches(pattern: string, value: string): boolean {
  if (!pattern.includes("*")) return pattern === value;
  let regex = globCache.get(pattern);
  if (!regex) {
    const source = pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
      .join(".*");
    regex = new RegExp(`^${source}$`, "s");
    if (globCache.size > 1024) globCache.clear();
    globCache.set(pattern, regex);
  }
  return regex.test(value);
}
