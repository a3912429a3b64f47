/** Turning stored events back into the normalised form the protocol functions read. */
import { type RoomEvent, toRoomEvent } from "./events.ts";
import type { RoomVersion } from "./room_versions.ts";
import type { StoredEvent } from "../ports/event_store.ts";

/** The RoomEvent view of a stored event, room ID included even for a v12 create event. */
export function toStoredRoomEvent(stored: StoredEvent, version: RoomVersion): RoomEvent {
  return toRoomEvent(stored.pdu, stored.eventId, version);
}
