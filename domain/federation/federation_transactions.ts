/**
 * Federation transactions: what the federation outbox holds, how a destination's entries become
 * one `PUT /_matrix/federation/v1/send/{txnId}` (at most 50 PDUs and 100 EDUs, PDUs in order),
 * and what each answer means for the stream.
 *
 * The transaction ID is derived from the entries it carries, so a transaction retried after a
 * failure goes out under the same ID and the receiver's per-origin deduplication applies. A
 * retry that carries more entries (some arrived meanwhile) is a different transaction and gets
 * a different ID; the receiver skips the PDUs it already has by event ID.
 *
 * Answers (the spec defines only 200; the rest follows what retrying can change):
 * - 2xx: sent. Per-PDU errors in `pdus` are the receiver's verdict on that event: logged, never
 *   retried (Synapse does the same).
 * - no answer (FederationUnreachable), 5xx, 408 and 429: the destination is backed off and the
 *   same transaction retried later.
 * - `refused` by the transport (a private address, a bad name, federation switched off) and any
 *   other 4xx: the same request would be refused again, so the transaction is dropped with a
 *   warning, as Synapse drops a transaction answered with a 4xx. Later events still go, and the
 *   receiver fetches what it missed through their prev_events (get_missing_events).
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { encodeBase64UrlUnpadded } from "../protocol/base64.ts";
import { canonicalJsonBytes } from "../protocol/canonical_json.ts";
import { isJsonObject, type JsonObject, type JsonValue } from "../protocol/json.ts";
import type { EventReader } from "../ports/event_store.ts";
import { type FederationTransport, FederationUnreachable } from "../ports/federation_transport.ts";
import type { OutboxEntry } from "../ports/outbox_store.ts";
import type { DeliveryOutcome } from "../outbox/outbox_worker.ts";

/** The outbox stream kind of federation transactions (one stream per destination server). */
export const FEDERATION_STREAM = "federation";
/** Most PDUs in one transaction (spec: "Transactions are limited in size"). */
export const MAX_PDUS_PER_TRANSACTION = 50;
/** Most EDUs in one transaction. */
export const MAX_EDUS_PER_TRANSACTION = 100;
/**
 * Most bytes of EDU content in one transaction. PDUs are at most 64 KiB each (3.2 MiB for 50),
 * and 100 to-device EDUs of up to 64 KiB would take a transaction past the 8 MiB receivers
 * (this server among them) accept; a transaction refused as too large would be dropped.
 */
export const MAX_EDU_BYTES_PER_TRANSACTION = 4 * 1024 * 1024;

/** An Ephemeral Data Unit as a transaction carries it. */
export interface Edu {
  edu_type: string;
  content: JsonObject;
}

/** A federation outbox entry: one event to send (read from the store at send time), or an EDU. */
export type FederationPayload =
  | { kind: "pdu"; room_id: string; event_id: string; position: number }
  | { kind: "edu"; edu_type: string; content: JsonObject };

/** The entries one transaction carries, split by kind, in stream order. */
export interface TransactionPlan {
  /** How many entries from the front of the stream it deals with (malformed ones included). */
  taken: number;
  /** The refs of those entries: what the transaction ID is derived from. */
  refs: OutboxEntry["ref"][];
  /** In stream order, except that each room's events are in log order (see `planTransaction`). */
  pdus: { roomId: string; eventId: string; position: number }[];
  edus: Edu[];
}

/**
 * The longest front of `entries` that fits one transaction: it stops before the entry that
 * would be the 51st PDU or the 101st EDU, or take the EDUs' content past `eduBytes` (the first
 * EDU always goes), so the stream's order is kept across transactions. An entry of no known
 * kind is taken (and so dropped) without being sent.
 */
export function planTransaction(
  entries: readonly OutboxEntry[],
  limits: { pdus: number; edus: number; eduBytes?: number } = {
    pdus: MAX_PDUS_PER_TRANSACTION,
    edus: MAX_EDUS_PER_TRANSACTION,
  },
): TransactionPlan {
  const plan: TransactionPlan = { taken: 0, refs: [], pdus: [], edus: [] };
  const maxEduBytes = limits.eduBytes ?? MAX_EDU_BYTES_PER_TRANSACTION;
  const encoder = new TextEncoder();
  let eduBytes = 0;
  for (const entry of entries) {
    const payload = entry.payload as Partial<FederationPayload>;
    if (payload.kind === "pdu") {
      if (plan.pdus.length === limits.pdus) break;
      if (
        typeof payload.room_id === "string" && typeof payload.event_id === "string" &&
        typeof payload.position === "number"
      ) {
        plan.pdus.push({
          roomId: payload.room_id,
          eventId: payload.event_id,
          position: payload.position,
        });
      }
    } else if (payload.kind === "edu") {
      if (plan.edus.length === limits.edus) break;
      if (typeof payload.edu_type === "string" && isJsonObject(payload.content)) {
        const bytes = encoder.encode(JSON.stringify(payload.content)).length;
        if (plan.edus.length > 0 && eduBytes + bytes > maxEduBytes) break;
        eduBytes += bytes;
        plan.edus.push({ edu_type: payload.edu_type, content: payload.content });
      }
    }
    plan.taken++;
    plan.refs.push(entry.ref);
  }
  plan.pdus = inRoomOrder(plan.pdus);
  return plan;
}

/**
 * The stream orders entries by the event's timestamp, and two processes' clocks may disagree by
 * a little: within one room, the log position is the true order. Each room's events are put back
 * in position order in the slots that room holds, the interleaving of rooms unchanged.
 */
function inRoomOrder<T extends { roomId: string; position: number }>(pdus: T[]): T[] {
  const byRoom = new Map<string, T[]>();
  for (const p of pdus) {
    const list = byRoom.get(p.roomId);
    if (list) list.push(p);
    else byRoom.set(p.roomId, [p]);
  }
  for (const list of byRoom.values()) list.sort((a, b) => b.position - a.position);
  return pdus.map((p) => byRoom.get(p.roomId)!.pop()!);
}

/** The transaction ID of the entries `refs` name: the same entries always give the same ID. */
export function transactionIdOf(refs: readonly OutboxEntry["ref"][]): string {
  return encodeBase64UrlUnpadded(sha256(canonicalJsonBytes(refs as JsonValue)).slice(0, 18));
}

/** The `unsigned` keys that concern only this server's clients, never sent to other servers. */
const LOCAL_UNSIGNED = ["transaction_id", "membership", "prev_content", "redacted_because"];

/** The event as other servers receive it: the stored PDU, its `unsigned` carrying `age`. */
export function outgoingPdu(pdu: JsonObject, now: number): JsonObject {
  const unsigned: JsonObject = isJsonObject(pdu.unsigned) ? { ...pdu.unsigned } : {};
  for (const key of LOCAL_UNSIGNED) delete unsigned[key];
  delete unsigned.age_ts;
  if (typeof pdu.origin_server_ts === "number") {
    unsigned.age = Math.max(0, now - pdu.origin_server_ts);
  }
  return { ...pdu, unsigned };
}

/** What delivery reads and uses. */
export interface FederationDeliveryDeps {
  /** The events to send are read from here at send time. */
  store: Pick<EventReader, "getEvents">;
  transport: FederationTransport;
  /** This server's name (the transaction's `origin`). */
  serverName: string;
  now?: () => number;
  /** How long one transaction may take before it counts as failed. */
  timeoutMs?: number;
  /** Where warnings go (tests capture them). */
  log?: (message: string, ...details: unknown[]) => void;
}

/** Turns a destination's outbox entries into transactions. */
export class FederationDelivery {
  readonly #deps: FederationDeliveryDeps;

  /** Delivery over the event store and the federation transport. */
  constructor(deps: FederationDeliveryDeps) {
    this.#deps = deps;
  }

  /**
   * The outbox worker's `deliver`: send one transaction made of the front of `entries`, and say
   * how many entries it dealt with or that the destination must back off.
   */
  async deliver(destination: string, entries: OutboxEntry[]): Promise<DeliveryOutcome> {
    const plan = planTransaction(entries);
    if (plan.taken === 0) return { done: 0 };
    const now = (this.#deps.now ?? Date.now)();
    const stored = await this.#deps.store.getEvents(plan.pdus.map((p) => p.eventId));
    const pdus: JsonObject[] = [];
    for (const { eventId } of plan.pdus) {
      const event = stored.get(eventId);
      // Only accepted events leave; a missing one (never the case for local events) is skipped.
      if (!event || event.status !== "accepted") continue;
      pdus.push(outgoingPdu(event.pdu as unknown as JsonObject, now));
    }
    if (pdus.length === 0 && plan.edus.length === 0) return { done: plan.taken };
    const txnId = transactionIdOf(plan.refs);
    const body: JsonObject = {
      origin: this.#deps.serverName,
      origin_server_ts: now,
      pdus,
      edus: plan.edus as unknown as JsonValue[],
    };
    const log = this.#deps.log ?? console.warn;
    let response;
    try {
      response = await this.#deps.transport.request({
        method: "PUT",
        destination,
        path: `/_matrix/federation/v1/send/${encodeURIComponent(txnId)}`,
        body,
        timeoutMs: this.#deps.timeoutMs,
      });
    } catch (error) {
      if (error instanceof FederationUnreachable && error.failure === "refused") {
        log(`federation: transaction ${txnId} to ${destination} refused, dropped`, error.message);
        return { done: plan.taken };
      }
      log(`federation: transaction ${txnId} to ${destination} failed`, String(error));
      return { done: 0, failed: true };
    }
    const { status } = response;
    if (status >= 200 && status < 300) {
      logPduErrors(destination, txnId, response.body, log);
      return { done: plan.taken };
    }
    if (status >= 500 || status === 408 || status === 429) {
      log(`federation: transaction ${txnId} to ${destination} answered ${status}, retrying later`);
      return { done: 0, failed: true };
    }
    log(
      `federation: transaction ${txnId} to ${destination} answered ${status}, dropped`,
      response.body,
    );
    return { done: plan.taken };
  }
}

/** Per-PDU errors of a 200 answer (`{"pdus": {"$id": {"error": "..."}}}`): logged only. */
function logPduErrors(
  destination: string,
  txnId: string,
  body: JsonValue | null,
  log: (message: string, ...details: unknown[]) => void,
): void {
  if (!isJsonObject(body) || !isJsonObject(body.pdus)) return;
  for (const [eventId, result] of Object.entries(body.pdus)) {
    if (isJsonObject(result) && result.error !== undefined) {
      log(
        `federation: ${destination} refused ${eventId} in transaction ${txnId}`,
        String(result.error),
      );
    }
  }
}
