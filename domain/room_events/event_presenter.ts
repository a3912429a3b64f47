/**
 * Stored events as clients see them: redactions applied (with `unsigned.redacted_because`),
 * the sending device's transaction ID, and `prev_content` for state events. Every room event
 * endpoint presents through here so they all agree.
 */
import { authStateFromEvents } from "../auth_rules.ts";
import { type ClientEvent, toClientEvent } from "../client_event.ts";
import { type RoomEvent, stateKey } from "../events.ts";
import type { EventReader, StoredEvent } from "../ports/event_store.ts";
import type { TransactionStore } from "../ports/transaction_store.ts";
import { redactEvent } from "../redaction.ts";
import { checkRedactionApplies } from "../redaction_auth_rules.ts";
import type { RoomVersion } from "../room_versions.ts";
import { toStoredRoomEvent } from "../stored_events.ts";
import { CREATE_KEY, POWER_LEVELS_KEY } from "../auth_context.ts";

/** What presenting reads from. */
export interface EventPresenterDeps {
  store: EventReader;
  transactions: TransactionStore;
  now: () => number;
  /** This server's name: our users' redactions apply only to their own events or by level. */
  serverName: string;
}

/** Who is looking, and how much to attach. */
export interface PresentOptions {
  roomId: string;
  version: RoomVersion;
  /** The viewing device: its own sends carry `unsigned.transaction_id`. */
  deviceId?: string;
  /** Attach `unsigned.prev_content` to state events (costs a state read per state event). */
  prevContent?: boolean;
}

/** Formats stored events for clients. */
export class EventPresenter {
  /** Presenter over the store and transaction records. */
  constructor(private readonly deps: EventPresenterDeps) {}

  /** Client events for `events`, in the same order. */
  async present(events: readonly StoredEvent[], options: PresentOptions): Promise<ClientEvent[]> {
    if (events.length === 0) return [];
    const ids = events.map((e) => e.eventId);
    const [redactions, txnIds, prevContents] = await Promise.all([
      this.appliedRedactions(options.roomId, events, options.version),
      options.deviceId === undefined
        ? Promise.resolve(new Map<string, string>())
        : this.deps.transactions.transactionIdsFor(ids, options.deviceId),
      options.prevContent ? this.#prevContents(events) : Promise.resolve(new Map()),
    ]);
    const now = this.deps.now();
    return events.map((event) => {
      const redaction = redactions.get(event.eventId);
      const redactedBecause = redaction
        ? toClientEvent(redaction.eventId, redaction.pdu, {
          roomId: options.roomId,
          version: options.version,
          now,
        })
        : undefined;
      const pdu = redaction ? redactEvent(event.pdu, options.version) : event.pdu;
      const prev = prevContents.get(event.eventId);
      return toClientEvent(event.eventId, pdu, {
        roomId: options.roomId,
        version: options.version,
        now,
        transactionId: txnIds.get(event.eventId),
        prevContent: prev && !redaction ? prev : undefined,
        redactedBecause,
      });
    });
  }

  /**
   * For each event that an accepted redaction applies to, that redaction (the first in arrival
   * order): its sender sent the target or had the redact level at the redaction (remote
   * senders: or share the target's server), in every room version.
   */
  async appliedRedactions(
    roomId: string,
    events: readonly StoredEvent[],
    version: RoomVersion,
  ): Promise<Map<string, StoredEvent>> {
    const index = await this.deps.store.redactionsOf(roomId, events.map((e) => e.eventId));
    const out = new Map<string, StoredEvent>();
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

  /** The content each state event replaced, when it replaced one. */
  async #prevContents(events: readonly StoredEvent[]) {
    const prevIds = new Map<string, string>();
    await Promise.all(events.map(async (event) => {
      if (event.pdu.state_key === undefined) return;
      const before = await this.deps.store.stateAtEvent(event.eventId, "before");
      const prev = before?.get(stateKey(event.pdu.type, event.pdu.state_key));
      if (prev !== undefined) prevIds.set(event.eventId, prev);
    }));
    const prevEvents = await this.deps.store.getEvents([...prevIds.values()]);
    const out = new Map<string, StoredEvent["pdu"]["content"]>();
    for (const [id, prevId] of prevIds) {
      const prev = prevEvents.get(prevId);
      if (prev) out.set(id, prev.pdu.content);
    }
    return out;
  }
}
