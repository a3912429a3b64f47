/**
 * Auth rules for m.room.create (rule 1 of every room version) and the checks tying an event to
 * its room's create event: v1-11 by the create event's room_id, v12 by deriving the room ID from
 * the create event's ID.
 */
import { ALLOWED, type AuthDecision, deny, quote, serverNameOf } from "./auth_context.ts";
import { type RoomEvent, roomIdFromCreateEventId } from "./events.ts";
import { isValidUserId } from "./identifiers.ts";
import { type RoomVersion, roomVersion } from "./room_versions.ts";

/** Rule 1: whether an m.room.create event is allowed; it depends on no room state. */
export function checkCreateEvent(event: RoomEvent, version: RoomVersion): AuthDecision {
  if (event.prev_events.length > 0) return deny("m.room.create event has prev_events");
  if (version.roomIdIsCreateEventHash) {
    // A normalised v12 create carries the room ID derived from its own event ID (or none); any
    // other value came from a room_id field on the PDU, which this version forbids.
    if (event.room_id !== "" && event.room_id !== roomIdFromCreateEventId(event.event_id)) {
      return deny("m.room.create event must not have a room_id");
    }
  } else if (serverNameOf(event.room_id) !== serverNameOf(event.sender)) {
    return deny("room ID's domain does not match the sender's domain");
  }
  const content = event.content;
  const declared = content.room_version;
  if (declared !== undefined && (typeof declared !== "string" || !roomVersion(declared))) {
    return deny(`unrecognised room version ${quote(declared)}`);
  }
  if (version.createHasCreatorField && !Object.hasOwn(content, "creator")) {
    return deny("m.room.create content has no creator");
  }
  if (version.privilegedCreators && Object.hasOwn(content, "additional_creators")) {
    const additional = content.additional_creators;
    if (!Array.isArray(additional)) return deny("additional_creators is not an array");
    for (const user of additional) {
      if (typeof user !== "string" || !isValidUserId(user)) {
        return deny(`additional_creators entry ${quote(user)} is not a valid user ID`);
      }
    }
  }
  return ALLOWED;
}

/**
 * Whether `createEvent` is the create event of `event`'s room: v12 (rule 2) the room ID must be
 * the create event's ID with `!` for `$`; earlier versions compare room IDs (rule 2.5).
 */
export function checkCreateEventOfRoom(
  event: RoomEvent,
  createEvent: RoomEvent,
  version: RoomVersion,
): AuthDecision {
  if (createEvent.type !== "m.room.create") return deny("the create event is not m.room.create");
  if (version.roomIdIsCreateEventHash) {
    if (event.room_id !== roomIdFromCreateEventId(createEvent.event_id)) {
      return deny("room ID is not derived from the m.room.create event");
    }
  } else if (createEvent.room_id !== event.room_id) {
    return deny("m.room.create event belongs to another room");
  }
  return ALLOWED;
}

/** The user whose join directly after the create event needs no other permission. */
export function firstJoinUser(createEvent: RoomEvent, version: RoomVersion): unknown {
  return version.createHasCreatorField ? createEvent.content.creator : createEvent.sender;
}
