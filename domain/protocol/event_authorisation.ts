/**
 * The authorisation checks an event passes before it is appended, as the spec's "checks
 * performed on receipt of a PDU" order them: against its own auth events (else rejected),
 * against the state before it (else rejected), against the room's current state (else soft
 * failed). Local events and federated ones go through the same rules.
 */
import { authEventKeys } from "./auth_event_selection.ts";
import { authStateFromEvents, checkAuthEventsList, checkEventAuth } from "./auth_rules.ts";
import type { AuthDecision } from "./auth_context.ts";
import { type RoomEvent, roomIdFromCreateEventId, type StateMap } from "./events.ts";
import type { RoomVersion } from "./room_versions.ts";
import type { EventReader, EventStatus, StoredEvent } from "../ports/event_store.ts";
import { toStoredRoomEvent } from "./stored_events.ts";

/** The verdict on one event and, when it is not accepted, why. */
export interface AuthorisationVerdict {
  status: EventStatus;
  reason?: string;
}

/** Decide an incoming event's status from the three checks, reading what it needs from `store`. */
export async function authoriseEvent(
  event: RoomEvent,
  version: RoomVersion,
  store: EventReader,
): Promise<AuthorisationVerdict> {
  if (event.type === "m.room.create") {
    return verdict(checkEventAuth(event, () => undefined, version), "rejected");
  }
  const createEvent = await roomCreateEvent(event, version, store);
  if (!createEvent) return { status: "rejected", reason: "the room's create event is unknown" };

  // 1. The event's own auth events.
  const cited = await store.getEvents(event.auth_events);
  const missing = event.auth_events.filter((id) => !cited.has(id));
  if (missing.length > 0) {
    return { status: "rejected", reason: `unknown auth events: ${missing.join(", ")}` };
  }
  const authEvents = [...cited.values()].map((e) => toStoredRoomEvent(e, version));
  const listCheck = checkAuthEventsList(event, authEvents, version, {
    isRejected: (id) => cited.get(id)?.status === "rejected",
  });
  if (!listCheck.allowed) return { status: "rejected", reason: listCheck.reason };
  const options = { createEvent };
  const againstAuthEvents = checkEventAuth(
    event,
    authStateFromEvents(authEvents),
    version,
    options,
  );
  if (!againstAuthEvents.allowed) return verdict(againstAuthEvents, "rejected");

  // 2. The state before the event: the resolved states after its prev_events.
  const before = await store.stateAfterEvents(event.room_id, event.prev_events);
  const beforeState = await selectedState(event, version, before, store);
  const againstBefore = checkEventAuth(event, authStateFromEvents(beforeState), version, options);
  if (!againstBefore.allowed) return verdict(againstBefore, "rejected");

  // 3. The room's current state: failing here soft-fails (stored, never shown or built upon).
  const current = await store.currentState(event.room_id);
  const currentState = await selectedState(event, version, current, store);
  const againstCurrent = checkEventAuth(event, authStateFromEvents(currentState), version, options);
  return verdict(againstCurrent, "soft_failed");
}

function verdict(decision: AuthDecision, failure: EventStatus): AuthorisationVerdict {
  return decision.allowed ? { status: "accepted" } : { status: failure, reason: decision.reason };
}

/** The events of `state` that the auth rules may read for `event` (its selection keys). */
async function selectedState(
  event: RoomEvent,
  version: RoomVersion,
  state: StateMap,
  store: EventReader,
): Promise<RoomEvent[]> {
  const ids = authEventKeys(event, version).flatMap((key) => {
    const id = state.get(key);
    return id === undefined ? [] : [id];
  });
  const found = await store.getEvents(ids);
  return [...found.values()].map((e) => toStoredRoomEvent(e, version));
}

/** The room's create event: named by the room ID in v12, cited in auth events before that. */
async function roomCreateEvent(
  event: RoomEvent,
  version: RoomVersion,
  store: EventReader,
): Promise<RoomEvent | undefined> {
  let stored: StoredEvent | null = null;
  if (version.roomIdIsCreateEventHash) {
    stored = await store.getEvent(`$${event.room_id.slice(1)}`);
    if (stored && roomIdFromCreateEventId(stored.eventId) !== event.room_id) stored = null;
  } else {
    const cited = await store.getEvents(event.auth_events);
    stored = [...cited.values()].find((e) => e.pdu.type === "m.room.create") ?? null;
  }
  return stored ? toStoredRoomEvent(stored, version) : undefined;
}
