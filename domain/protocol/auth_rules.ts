/**
 * The event authorisation rules of room versions 1 to 12, as pure synchronous functions driven
 * by the room version flags. `checkEventAuth` runs the rules against a given state (the event's
 * auth events, or the state before it); `checkAuthEventsList` runs the rules about the
 * auth_events list itself, which need the listed events and whether they were rejected.
 */
import {
  ALLOWED,
  type AuthContext,
  type AuthDecision,
  type AuthOptions,
  type AuthStateLookup,
  CREATE_KEY,
  deny,
  formatLevel,
  membershipOf,
  POWER_LEVELS_KEY,
  quote,
  serverNameOf,
} from "./auth_context.ts";
import { authEventKeys } from "./auth_event_selection.ts";
import { checkCreateEvent, checkCreateEventOfRoom } from "./create_auth_rules.ts";
import { type RoomEvent, type StateKey, stateKey } from "./events.ts";
import { checkMemberEvent } from "./member_auth_rules.ts";
import { checkPowerLevelsEvent } from "./power_level_auth_rules.ts";
import { powerLevelsOf, requiredPowerLevelForEvent, userPowerLevel } from "./power_levels.ts";
import { checkRedactionEvent } from "./redaction_auth_rules.ts";
import type { RoomVersion } from "./room_versions.ts";

export type {
  AuthDecision,
  AuthOptions,
  AuthStateLookup,
  ThirdPartyInviteVerifier,
} from "./auth_context.ts";

const NO_OPTIONS: AuthOptions = Object.freeze({});

/**
 * Whether `event` passes the auth rules of `version` against `authState`. The rules about the
 * auth_events list itself (duplicates, selection, rejected entries) are `checkAuthEventsList`.
 */
export function checkEventAuth(
  event: RoomEvent,
  authState: AuthStateLookup,
  version: RoomVersion,
  options: AuthOptions = NO_OPTIONS,
): AuthDecision {
  if (event.type === "m.room.create") return checkCreateEvent(event, version);

  const createEvent = options.createEvent ?? authState(CREATE_KEY);
  if (createEvent === undefined) return deny("no m.room.create event in the auth state");
  const ofRoom = checkCreateEventOfRoom(event, createEvent, version);
  if (!ofRoom.allowed) return ofRoom;

  if (
    createEvent.content["m.federate"] === false &&
    serverNameOf(event.sender) !== serverNameOf(createEvent.sender)
  ) {
    return deny("room is not federated and the sender is from another server");
  }

  if (version.specialCaseAliasesAuth && event.type === "m.room.aliases") {
    if (event.state_key === undefined) return deny("m.room.aliases event has no state_key");
    if (event.state_key !== serverNameOf(event.sender)) {
      return deny("m.room.aliases state_key does not match the sender's domain");
    }
    return ALLOWED;
  }

  const powerLevelsEvent = authState(POWER_LEVELS_KEY);
  const ctx: AuthContext = {
    event,
    authState,
    version,
    options,
    createEvent,
    powerLevelsEvent,
    levels: powerLevelsOf(powerLevelsEvent, version),
    senderLevel: userPowerLevel(event.sender, powerLevelsEvent, createEvent, version),
  };

  if (event.type === "m.room.member") return checkMemberEvent(ctx);

  if (membershipOf(authState, event.sender) !== "join") {
    return deny("sender is not joined to the room");
  }

  const { levels, senderLevel } = ctx;
  if (event.type === "m.room.third_party_invite") {
    if (senderLevel >= levels.invite) return ALLOWED;
    return deny(
      `sender's power level ${formatLevel(senderLevel)} is below the invite level ${
        formatLevel(levels.invite)
      }`,
    );
  }

  const eventStateKey = event.state_key;
  const isState = eventStateKey !== undefined;
  const required = requiredPowerLevelForEvent(event.type, isState, levels);
  if (required > senderLevel) {
    const action = event.type === "m.room.power_levels"
      ? "change power levels"
      : `send ${quote(event.type)}`;
    return deny(
      `sender's power level ${formatLevel(senderLevel)} is below the ${
        formatLevel(required)
      } needed to ${action}`,
    );
  }

  if (isState && eventStateKey.startsWith("@") && eventStateKey !== event.sender) {
    return deny("state_key starting with '@' must be the sender's own user ID");
  }

  if (event.type === "m.room.power_levels") return checkPowerLevelsEvent(ctx);
  if (version.specialCaseRedactionAuth && event.type === "m.room.redaction") {
    return checkRedactionEvent(ctx);
  }
  return ALLOWED;
}

/** What `checkAuthEventsList` needs beyond the events. */
export interface AuthEventsListOptions {
  /** Whether an auth event was itself rejected on receipt. */
  isRejected?: (eventId: string) => boolean;
}

/**
 * Rule "considering the event's auth_events": no duplicate (type, state_key), only entries the
 * auth events selection allows, none rejected, all in the event's room, and the create event
 * present (v1-11) or absent (v12). `authEvents` are the events the event's auth_events name.
 */
export function checkAuthEventsList(
  event: RoomEvent,
  authEvents: readonly RoomEvent[],
  version: RoomVersion,
  options: AuthEventsListOptions = {},
): AuthDecision {
  if (event.type === "m.room.create") return ALLOWED;
  const allowedKeys = authEventKeys(event, version);
  const seen = new Set<StateKey>();
  let hasCreate = false;
  for (const authEvent of authEvents) {
    const id = quote(authEvent.event_id);
    if (authEvent.state_key === undefined) return deny(`auth event ${id} is not a state event`);
    const key = stateKey(authEvent.type, authEvent.state_key);
    if (seen.has(key)) {
      return deny(
        `duplicate auth events for (${quote(authEvent.type)}, ${quote(authEvent.state_key)})`,
      );
    }
    seen.add(key);
    if (authEvent.type === "m.room.create") {
      if (version.roomIdIsCreateEventHash) {
        return deny("m.room.create must not be among the auth events");
      }
      hasCreate = true;
    }
    if (!allowedKeys.includes(key)) {
      return deny(`auth event ${id} is not one the auth events selection allows`);
    }
    if (options.isRejected?.(authEvent.event_id)) return deny(`auth event ${id} was rejected`);
    if (authEvent.room_id !== event.room_id) return deny(`auth event ${id} is in another room`);
  }
  if (!hasCreate && !version.roomIdIsCreateEventHash) {
    return deny("no m.room.create event among the auth events");
  }
  return ALLOWED;
}

/** A state look-up over a list of events (such as an event's auth events); later entries win. */
export function authStateFromEvents(events: Iterable<RoomEvent>): AuthStateLookup {
  const byKey = new Map<StateKey, RoomEvent>();
  for (const event of events) {
    if (event.state_key !== undefined) byKey.set(stateKey(event.type, event.state_key), event);
  }
  return (key) => byKey.get(key);
}
