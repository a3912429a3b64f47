/**
 * Stage 2 of the read pipeline: which accepted redactions apply to which events. Whether one
 * applies is decided on read, not when it arrives, because over federation a redaction can come
 * before its target; the rule itself is domain/redaction_auth_rules.ts.
 */
import { authStateFromEvents } from "../auth_rules.ts";
import { CREATE_KEY, POWER_LEVELS_KEY } from "../auth_context.ts";
import type { RoomEvent } from "../events.ts";
import type { EventReader, StoredEvent } from "../ports/event_store.ts";
import { checkRedactionApplies } from "../redaction_auth_rules.ts";
import type { RoomVersion } from "../room_versions.ts";
import { toStoredRoomEvent } from "../stored_events.ts";

/** What deciding redactions reads. */
export interface AppliedRedactionsDeps {
  store: EventReader;
  /** This server's name: our users' redactions apply only to their own events or by level. */
  serverName: string;
}

/** Finds the redactions that apply to events. */
export class AppliedRedactions {
  /** Over the event store's redaction index and state reads. */
  constructor(private readonly deps: AppliedRedactionsDeps) {}

  /**
   * For each event that an accepted redaction applies to, that redaction (the first in arrival
   * order): its sender sent the target or had the redact level at the redaction (remote
   * senders: or share the target's server), in every room version.
   */
  async of(
    roomId: string,
    events: readonly StoredEvent[],
    version: RoomVersion,
  ): Promise<Map<string, StoredEvent>> {
    const out = new Map<string, StoredEvent>();
    if (events.length === 0) return out;
    const index = await this.deps.store.redactionsOf(roomId, events.map((e) => e.eventId));
    if (index.size === 0) return out;
    const redactionEvents = await this.deps.store.getEvents([...index.values()].flat());
    for (const event of events) {
      for (const redactionId of index.get(event.eventId) ?? []) {
        const redaction = redactionEvents.get(redactionId);
        if (!redaction || redaction.status !== "accepted") continue;
        if (await this.#applies(redaction, event, version)) {
          out.set(event.eventId, redaction);
          break;
        }
      }
    }
    return out;
  }

  async #applies(redaction: StoredEvent, target: StoredEvent, version: RoomVersion) {
    const redactionEvent = toStoredRoomEvent(redaction, version);
    const targetEvent = toStoredRoomEvent(target, version);
    const state = await this.deps.store.stateAtEvent(redaction.eventId, "before");
    const wanted = [state?.get(CREATE_KEY), state?.get(POWER_LEVELS_KEY)]
      .filter((id): id is string => id !== undefined);
    const found = await this.deps.store.getEvents(wanted);
    const lookup = authStateFromEvents(
      [...found.values()].map((e): RoomEvent => toStoredRoomEvent(e, version)),
    );
    return checkRedactionApplies(redactionEvent, targetEvent, lookup, version, {
      localServer: this.deps.serverName,
    }).allowed;
  }
}
