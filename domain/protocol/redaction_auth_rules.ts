/**
 * Who may redact what. v1-2 decide it in the auth rules (redact level, or the redaction and its
 * target come from the same server by event ID). From v3 the auth rules only apply the send
 * level; whether a redaction takes effect is decided when both events are known ("handling
 * redactions"): redact level, or the two senders share a server. Those rules trust each server
 * to police its own users, so our own sends are checked here too (`checkLocalRedaction`): own
 * events, or the redact level.
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
import { forbidden, invalidParam, MatrixError } from "../errors.ts";
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

/** Options of `checkRedactionApplies`. */
export interface RedactionApplyOptions {
  /**
   * This server's name. Our own users' redactions never use the same-server rule: since the
   * send-time check (`checkLocalRedaction`) this server creates no such redactions, so one in
   * the store (written before that check existed) is not honoured. Null only where no server
   * is ours (spec fixtures).
   */
  localServer: string | null;
  /** The room's create event, when the state look-up lacks it. */
  createEvent?: RoomEvent;
}

/**
 * Whether an accepted redaction should be applied to `redacted`, given the state before the
 * redaction (its create and power levels events, in every room version): its sender sent
 * `redacted`, or has the redact level. A remote sender may also
 * redact events of users on its own server (v3+ "handling redactions"; v1-2 decided that in the
 * auth rules by event ID domain, which is checked again here).
 */
export function checkRedactionApplies(
  redaction: RoomEvent,
  redacted: RoomEvent,
  state: AuthStateLookup,
  version: RoomVersion,
  options: RedactionApplyOptions,
): AuthDecision {
  if (redacted.room_id !== redaction.room_id) return deny("redacted event is in another room");
  if (redaction.sender === redacted.sender) return ALLOWED;
  const createEvent = options.createEvent ?? state(CREATE_KEY);
  const powerLevelsEvent = state(POWER_LEVELS_KEY);
  const level = userPowerLevel(redaction.sender, powerLevelsEvent, createEvent, version);
  const redactLevel = powerLevelsOf(powerLevelsEvent, version).redact;
  if (level >= redactLevel) return ALLOWED;
  const senderServer = serverNameOf(redaction.sender);
  if (senderServer !== options.localServer) {
    const sameServer = version.specialCaseRedactionAuth
      ? serverNameOf(redaction.event_id) !== "" &&
        serverNameOf(redaction.event_id) === serverNameOf(redacted.event_id)
      : senderServer === serverNameOf(redacted.sender);
    if (sameServer) return ALLOWED;
  }
  const why = senderServer === options.localServer
    ? "did not send the redacted event"
    : "the redacted event is from another server";
  return deny(
    `sender's power level ${formatLevel(level)} is below the redact level ${
      formatLevel(redactLevel)
    } and ${why}`,
  );
}

/**
 * Whether an accepted redaction takes effect on `target`, the one event it names, and so is
 * shown to clients: never on a rejected event (we do not hold it) nor on a create event (as
 * Synapse, which never redacts one), never across rooms, otherwise `checkRedactionApplies` on
 * the state before the redaction. Reads decide this (domain/room_events/applied_redactions.ts:
 * a redaction that does not take effect is withheld, as Synapse's "Withholding redaction"), and
 * so do the projections that drop a redacted event (search index, relation counts), so both
 * agree.
 */
export function redactionTakesEffect(
  redaction: RoomEvent,
  target: RoomEvent,
  targetRejected: boolean,
  state: AuthStateLookup,
  version: RoomVersion,
  options: RedactionApplyOptions,
): boolean {
  if (targetRejected || target.type === "m.room.create") return false;
  if (target.room_id !== redaction.room_id) return false;
  return checkRedactionApplies(redaction, target, state, version, options).allowed;
}

/**
 * 404 for a redaction of an event we do not have. Its own class so that senders which turn an
 * unknown room's 404 into 403 (not to reveal rooms) can tell the two apart.
 */
export class UnknownRedactionTarget extends MatrixError {
  /** The 404 for `eventId`. */
  constructor(eventId: string) {
    super("M_NOT_FOUND", 404, `Could not find event ${eventId}`);
  }
}

/** What the send-time check needs of the event a local redaction names, read from the store. */
export interface RedactionTarget {
  roomId: string;
  sender: string;
  type: string;
}

/**
 * Whether a local user may send `redaction` (after `checkEventAuth` allowed it, so the sender
 * is joined): an event of another room is 400; the create event and server ACLs are never
 * redacted (as Synapse: a redacted ACL would shut every server out); otherwise the sender's
 * own event, or any event with the redact level in `authState` (the state the redaction
 * commits on). An event we do not have needs the redact level (it may still arrive over
 * federation, as Synapse allows), else 404. Returns the error to answer, or undefined.
 */
export function checkLocalRedaction(
  redaction: RoomEvent,
  target: RedactionTarget | undefined,
  authState: AuthStateLookup,
  version: RoomVersion,
  createEvent: RoomEvent | undefined = authState(CREATE_KEY),
): MatrixError | undefined {
  if (redaction.type !== "m.room.redaction" || redaction.redacts === undefined) return undefined;
  if (target !== undefined) {
    if (target.roomId !== redaction.room_id) {
      return invalidParam("Cannot redact an event from a different room");
    }
    if (target.type === "m.room.create" || target.type === "m.room.server_acl") {
      return forbidden(`Redacting ${target.type} events is not permitted`);
    }
    if (target.sender === redaction.sender) return undefined;
  }
  const powerLevelsEvent = authState(POWER_LEVELS_KEY);
  const level = userPowerLevel(redaction.sender, powerLevelsEvent, createEvent, version);
  const redactLevel = powerLevelsOf(powerLevelsEvent, version).redact;
  if (level >= redactLevel) return undefined;
  if (target === undefined) return new UnknownRedactionTarget(redaction.redacts);
  return forbidden(
    `Your power level ${formatLevel(level)} is below the redact level ${
      formatLevel(redactLevel)
    } needed to redact other users' events`,
  );
}
