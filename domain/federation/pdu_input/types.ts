/**
 * The contract of the incoming-PDU handler, used by every route that takes events from another
 * server (`/send`, `send_join`, `send_leave`, `send_knock`) and by backfill and
 * get_missing_events on the way in.
 */
import type { Pdu } from "../../protocol/events.ts";
import type { EventStatus } from "../../ports/event_store.ts";
import type { LocalEventHook } from "../../local_event_sender.ts";

/** How one PDU was handled. */
export interface PduOutcome {
  /**
   * The event's ID (computed from v3, carried in v1/v2); empty only when the PDU is too
   * malformed to name one.
   */
  eventId: string;
  /** What the checks decided, when the event was stored (rejected and soft-failed ones are). */
  status?: EventStatus;
  /** Why the PDU was dropped, rejected or soft-failed; absent when it was accepted. */
  error?: string;
}

/** Options for one PDU. */
export interface PduInputOptions {
  /** History fetched by backfill: positioned below the room's first event, never moves state. */
  backfill?: boolean;
  /**
   * Hooks for this PDU beside the handler's own, their writes in its commit when it is
   * accepted: send_join, send_leave and send_knock queue the event for the room's other
   * servers on the origin's behalf (it sends it to us alone).
   */
  hooks?: readonly LocalEventHook[];
}

/** Checks and stores PDUs from other servers, in the spec's order (see index.ts). */
export interface PduInput {
  /**
   * Handle one PDU `origin` sent for `roomId`: never throws for a bad PDU (the outcome carries
   * the error); throws only when storage or the process fails.
   */
  handle(
    origin: string,
    roomId: string,
    pdu: unknown,
    options?: PduInputOptions,
  ): Promise<PduOutcome>;
  /**
   * Handle several PDUs of `roomId` in order, as `handle` would one by one, with the same
   * outcomes; consecutive events may share commits. A failure of storage fails only the
   * outcome of the PDU it hit.
   */
  handleAll?(
    origin: string,
    roomId: string,
    pdus: readonly unknown[],
    options?: PduInputOptions,
  ): Promise<PduOutcome[]>;
}

/** An event we hold, in a room's log or as an outlier, with what its checks decided. */
export interface HeldEvent {
  eventId: string;
  pdu: Pdu;
  status: EventStatus;
}
