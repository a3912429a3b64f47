/**
 * Whether a redaction takes effect, decided while planning a batch, for the projections that
 * drop a redacted event (the search index, relation counts). Reads decide it too (the read
 * pipeline withholds a redaction that does not take effect); both use the one rule,
 * `redactionTakesEffect`, on the same inputs (the state before the redaction, the target), so
 * a redaction the pipeline withholds (another server's user redacting what they may not, an
 * event of another room, a create event) does not take its target out of search either.
 */
import { authStateFromEvents } from "../domain/protocol/auth_rules.ts";
import {
  type AuthStateLookup,
  CREATE_KEY,
  POWER_LEVELS_KEY,
} from "../domain/protocol/auth_context.ts";
import type { RoomEvent, StateMap } from "../domain/protocol/events.ts";
import type { EventStatus } from "../domain/ports/event_store.ts";
import { redactionTakesEffect } from "../domain/protocol/redaction_auth_rules.ts";
import type { RoomVersion } from "../domain/protocol/room_versions.ts";
import type { GroupId } from "./store_records.ts";

/** An event of the batch's room, planned in the batch or in its log. */
export interface PlacedEvent {
  event: RoomEvent;
  status: EventStatus;
  /** Its state group before it. */
  before: GroupId | null;
}

/** What the planner answers, planned events first. */
export interface RedactionEffectLookups {
  /** An event of this room in the batch or the log; undefined when not (yet) held there. */
  placed(eventId: string): Promise<PlacedEvent | undefined>;
  /** A state group's state. */
  state(group: GroupId | null): Promise<StateMap>;
  /** Events of this room by ID. */
  roomEvents(ids: readonly string[]): Promise<Map<string, RoomEvent>>;
}

/**
 * Whether accepted redaction `redactionId` takes effect on `targetId`. A target not held yet
 * (a redaction over federation may come first) does not: its own append asks again. The store
 * does not know which server is ours, so the same-server rule is not withheld from our own
 * users here; no such redaction is ever made (`checkLocalRedaction` refuses it at send), so
 * this agrees with reads.
 */
export async function redactionTakesEffectAt(
  redactionId: string,
  targetId: string,
  version: RoomVersion,
  lookups: RedactionEffectLookups,
): Promise<boolean> {
  const [redaction, target] = await Promise.all([
    lookups.placed(redactionId),
    lookups.placed(targetId),
  ]);
  if (!redaction || redaction.status !== "accepted" || !target) return false;
  const rejected = target.status === "rejected";
  let state: AuthStateLookup = () => undefined;
  // The rule reads state only for another sender's event.
  if (!rejected && redaction.event.sender !== target.event.sender) {
    const before = await lookups.state(redaction.before);
    const ids = [before.get(CREATE_KEY), before.get(POWER_LEVELS_KEY)]
      .filter((id): id is string => id !== undefined);
    state = authStateFromEvents((await lookups.roomEvents(ids)).values());
  }
  return redactionTakesEffect(redaction.event, target.event, rejected, state, version, {
    localServer: null,
  });
}

/** Whether any of `redactionIds` (accepted redactions naming `targetId`) takes effect. */
export async function anyTakesEffect(
  redactionIds: readonly string[],
  targetId: string,
  version: RoomVersion,
  lookups: RedactionEffectLookups,
): Promise<boolean> {
  for (const id of redactionIds) {
    if (await redactionTakesEffectAt(id, targetId, version, lookups)) return true;
  }
  return false;
}
