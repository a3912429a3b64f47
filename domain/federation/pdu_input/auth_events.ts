/**
 * Step 4 of the checks on receipt of a PDU: the auth rules against the event's own auth events.
 * The auth_events list must itself be right (no duplicates, only what the selection allows,
 * none rejected, all of this room, the create event where the version wants it), and the event
 * must pass the rules with those events as its state. Failing here rejects the event: it is
 * stored, marked, and never counts as state or as an extremity.
 */
import type { AuthDecision } from "../../protocol/auth_context.ts";
import {
  authStateFromEvents,
  checkAuthEventsList,
  checkEventAuth,
} from "../../protocol/auth_rules.ts";
import { type RoomEvent, toRoomEvent } from "../../protocol/events.ts";
import type { RoomVersion } from "../../protocol/room_versions.ts";
import type { HeldEvent } from "./types.ts";

/** The create event's ID in a version whose room ID names it (v12), else undefined. */
export function createEventIdOfRoom(roomId: string, version: RoomVersion): string | undefined {
  return version.roomIdIsCreateEventHash ? `$${roomId.slice(1)}` : undefined;
}

/** The IDs step 4 reads for `event`: its auth events and, in v12, the room's create event. */
export function authEventIdsNeeded(event: RoomEvent, version: RoomVersion): string[] {
  const createId = event.type === "m.room.create"
    ? undefined
    : createEventIdOfRoom(event.room_id, version);
  return createId === undefined ? event.auth_events : [...event.auth_events, createId];
}

/**
 * Decide `event` against its auth events. `held` must hold every ID `authEventIdsNeeded`
 * names (the caller fetched what was missing); an absent one fails the check.
 */
export function authoriseByAuthEvents(
  event: RoomEvent,
  held: ReadonlyMap<string, HeldEvent>,
  version: RoomVersion,
): AuthDecision {
  if (event.type === "m.room.create") return checkEventAuth(event, () => undefined, version);
  const authEvents: RoomEvent[] = [];
  for (const id of event.auth_events) {
    const found = held.get(id);
    if (!found) return { allowed: false, reason: `auth event ${id} is unknown` };
    authEvents.push(toRoomEvent(found.pdu, found.eventId, version));
  }
  const list = checkAuthEventsList(event, authEvents, version, {
    isRejected: (id) => held.get(id)?.status === "rejected",
  });
  if (!list.allowed) return list;
  let createEvent: RoomEvent | undefined;
  const createId = createEventIdOfRoom(event.room_id, version);
  if (createId !== undefined) {
    const create = held.get(createId);
    if (!create || create.status === "rejected") {
      return { allowed: false, reason: "the room's create event is unknown or rejected" };
    }
    createEvent = toRoomEvent(create.pdu, create.eventId, version);
  }
  return checkEventAuth(event, authStateFromEvents(authEvents), version, { createEvent });
}
