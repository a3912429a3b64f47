/**
 * Stage 2 of the read pipeline: which accepted redactions apply to which events, and which
 * redaction events clients must not see at all. Both are decided on read, not when a redaction
 * arrives, because over federation a redaction can come before its target; the rule itself is
 * `redactionTakesEffect` (domain/redaction_auth_rules.ts), which the projections that drop a
 * redacted event (search index, relation counts) apply too (kv/redaction_effects.ts).
 *
 * A redaction that does not apply is withheld from clients, as Synapse's `get_events_as_list`
 * withholds it ("Withholding redaction"): its target is unknown or rejected (it may still
 * arrive: the redaction then shows, since this is decided on every read), is a create event
 * (never redacted), is in another room, or its sender may not redact it (from room version 3
 * the auth rules leave that to readers: a remote sender without the redact level may only
 * redact events of its own server's users). Shown, it would tell clients to hide an event the
 * server keeps showing.
 */
import { authStateFromEvents } from "../protocol/auth_rules.ts";
import { CREATE_KEY, POWER_LEVELS_KEY } from "../protocol/auth_context.ts";
import type { RoomEvent } from "../protocol/events.ts";
import type { EventReader, StoredEvent } from "../ports/event_store.ts";
import { redactionTakesEffect } from "../protocol/redaction_auth_rules.ts";
import type { RoomVersion } from "../protocol/room_versions.ts";
import { toStoredRoomEvent } from "../protocol/stored_events.ts";

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
   * senders: or share the target's server), in every room version; never a create event.
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

  /**
   * The redaction events among `events` that clients must not see, because they do not apply
   * to the event they name (see the module comment). Events of other types cost no read; a
   * redaction of the sender's own event costs one (its target).
   */
  async withheld(events: readonly StoredEvent[], version: RoomVersion): Promise<Set<string>> {
    const out = new Set<string>();
    const redactions = events.filter((e) => e.pdu.type === "m.room.redaction");
    if (redactions.length === 0) return out;
    const targetOf = new Map<string, string>();
    for (const redaction of redactions) {
      const redacts = toStoredRoomEvent(redaction, version).redacts;
      if (typeof redacts === "string") targetOf.set(redaction.eventId, redacts);
      else out.add(redaction.eventId);
    }
    const targets = await this.deps.store.getEvents([...new Set(targetOf.values())]);
    await Promise.all(redactions.map(async (redaction) => {
      const targetId = targetOf.get(redaction.eventId);
      if (targetId === undefined) return;
      const target = targets.get(targetId);
      if (!target || !(await this.#applies(redaction, target, version))) {
        out.add(redaction.eventId);
      }
    }));
    return out;
  }

  /** Whether `redaction` takes effect on `target` (both known): `redactionTakesEffect`. */
  async #applies(redaction: StoredEvent, target: StoredEvent, version: RoomVersion) {
    const rejected = target.status === "rejected";
    const redactionEvent = toStoredRoomEvent(redaction, version);
    const targetEvent = toStoredRoomEvent(target, version);
    const noState = () => undefined;
    const options = { localServer: this.deps.serverName };
    // Refused without state, or one's own event: no state read (the rule allows that first).
    if (
      rejected || targetEvent.type === "m.room.create" ||
      targetEvent.room_id !== redactionEvent.room_id ||
      redactionEvent.sender === targetEvent.sender
    ) {
      return redactionTakesEffect(redactionEvent, targetEvent, rejected, noState, version, options);
    }
    const state = await this.deps.store.stateAtEvent(redaction.eventId, "before");
    const wanted = [state?.get(CREATE_KEY), state?.get(POWER_LEVELS_KEY)]
      .filter((id): id is string => id !== undefined);
    const found = await this.deps.store.getEvents(wanted);
    const lookup = authStateFromEvents(
      [...found.values()].map((e): RoomEvent => toStoredRoomEvent(e, version)),
    );
    return redactionTakesEffect(redactionEvent, targetEvent, false, lookup, version, options);
  }
}
