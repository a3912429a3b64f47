/**
 * Who may redact what. v1-2 decide it in the auth rules (redact level, or the redaction and its
 * target come from the same server by event ID). From v3 the auth rules only apply the send
 * level; whether a redaction takes effect is decided when both events are known ("handling
 * redactions"): redact level, or the two senders share a server.
 */
import {
  ALLOWED,
  type AuthContext,
  type AuthDecision,
  type AuthStateLookup,
  CREATE_KEY,
  deny,
  formatLevel,
  POWER_LEVELS_KEY,
  serverNameOf,
} from "./auth_context.ts";
import type { RoomEvent } from "./events.ts";
import { powerLevelsOf, userPowerLevel } from "./power_levels.ts";
import type { RoomVersion } from "./room_versions.ts";

/** v1-2 rule 11: an m.room.redaction needs the redact level or the target's event ID domain. */
export function checkRedactionEvent(ctx: AuthContext): AuthDecision {
  const { event, levels, senderLevel } = ctx;
  if (senderLevel >= levels.redact) return ALLOWED;
  const redacts = event.redacts;
  const domain = serverNameOf(event.event_id);
  if (typeof redacts === "string" && domain !== "" && serverNameOf(redacts) === domain) {
    return ALLOWED;
  }
  return deny(
    `sender's power level ${formatLevel(senderLevel)} is below the redact level ${
      formatLevel(levels.redact)
    } and the redacted event is from another server`,
  );
}

/**
 * Whether an accepted redaction should be applied to `redacted`, given the state at the
 * redaction. v3+: redact level, or the same server as the original sender. v1-2: the auth rules
 * already decided, so only the room must match.
 */
export function checkRedactionApplies(
  redaction: RoomEvent,
  redacted: RoomEvent,
  state: AuthStateLookup,
  version: RoomVersion,
  createEvent: RoomEvent | undefined = state(CREATE_KEY),
): AuthDecision {
  if (redacted.room_id !== redaction.room_id) return deny("redacted event is in another room");
  if (version.specialCaseRedactionAuth) return ALLOWED;
  if (serverNameOf(redaction.sender) === serverNameOf(redacted.sender)) return ALLOWED;
  const powerLevelsEvent = state(POWER_LEVELS_KEY);
  const level = userPowerLevel(redaction.sender, powerLevelsEvent, createEvent, version);
  const redactLevel = powerLevelsOf(powerLevelsEvent, version).redact;
  if (level >= redactLevel) return ALLOWED;
  return deny(
    `sender's power level ${formatLevel(level)} is below the redact level ${
      formatLevel(redactLevel)
    } and the redacted event is from another server`,
  );
}
