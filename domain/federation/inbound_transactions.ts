/**
 * Transactions other servers push to us (`PUT /_matrix/federation/v1/send/{txnId}`): each PDU
 * goes through the incoming-PDU handler and gets its own result, so one bad event never costs
 * the others. A PDU that was stored gets `{}` even when rejected or soft-failed (it was
 * handled; the status is ours to act on); one dropped unstored gets the reason. A sender retries a transaction until it is answered, so an answered transaction
 * is answered again from KV, never handled twice; a retry arriving while the first attempt is
 * still running in this process waits for that attempt's answer.
 *
 * One origin's transactions are handled one at a time, in arrival order, as Synapse does: a
 * server sends its next transaction only after the last was answered, so only a misbehaving one
 * ever waits, and it cannot make this process work on many of its transactions at once (each
 * EDU is bounded, their number per second is not). Past a few waiting, it gets 429
 * M_LIMIT_EXCEEDED, which senders retry later. The bound is per process.
 *
 * PDUs of one room are handled in the order sent (a later one may build on an earlier one);
 * rooms are handled side by side. A PDU is refused before any check when its room is one we
 * are not in, or when the room's server ACL denies the server that sent the transaction.
 *
 * EDUs (typing, receipts, presence, device lists, to-device) go to the EDU dispatcher after the
 * PDUs (edu_input.ts), before the answer is recorded.
 */
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import { MatrixError } from "../errors.ts";
import type { EventReader } from "../ports/event_store.ts";
import type { InboundTransactionStore } from "../ports/inbound_transaction_store.ts";
import type { PduInput, PduOutcome } from "./pdu_input/types.ts";
import { RoomServerAcl } from "./server_acl.ts";
import { nameOf } from "./pdu_input/format.ts";
import { roomVersion } from "../protocol/room_versions.ts";
import type { EduDispatcher } from "./edu_input.ts";

/** Most PDUs in one transaction (the spec's limit). */
export const MAX_TRANSACTION_PDUS = 50;
/** Most EDUs in one transaction (the spec's limit). */
export const MAX_TRANSACTION_EDUS = 100;
/** Transactions of one origin that may wait behind the one being handled (per process). */
export const MAX_WAITING_TRANSACTIONS_PER_ORIGIN = 4;
/** Longest error text kept per PDU, so a stored answer stays well within one KV value. */
const MAX_ERROR_CHARS = 400;

/** A transaction as the route validated it. */
export interface InboundTransaction {
  pdus: unknown[];
  edus: unknown[];
}

/** The answer: a result per PDU, by event ID (`{}` when it was accepted). */
export interface TransactionAnswer extends JsonObject {
  pdus: { [eventId: string]: { error?: string } };
}

/** What the receiver is built from. */
export interface TransactionReceiverDeps {
  pduInput: PduInput;
  answers: InboundTransactionStore;
  store: Pick<EventReader, "roomHead" | "currentStateEventId" | "getEvent">;
  /** Where the transaction's EDUs go; without one they are ignored. */
  edus?: Pick<EduDispatcher, "receive">;
}

/** Handles inbound transactions (see the module comment). */
export class TransactionReceiver {
  readonly #inFlight = new Map<string, Promise<TransactionAnswer>>();
  /** Per origin: the end of its chain of transactions, and how many are in it. */
  readonly #lanes = new Map<string, { tail: Promise<void>; count: number }>();
  readonly #acl: RoomServerAcl;

  constructor(private readonly deps: TransactionReceiverDeps) {
    this.#acl = new RoomServerAcl(deps.store);
  }

  /** Handle `origin`'s transaction `txnId`, or return the answer it already got. */
  receive(origin: string, txnId: string, txn: InboundTransaction): Promise<TransactionAnswer> {
    const key = JSON.stringify([origin, txnId]);
    const running = this.#inFlight.get(key);
    if (running) return running;
    const attempt = this.#inTurn(origin, () => this.#receive(origin, txnId, txn))
      .finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, attempt);
    return attempt;
  }

  /** Run `work` after `origin`'s earlier transactions; 429 when too many already wait. */
  #inTurn<T>(origin: string, work: () => Promise<T>): Promise<T> {
    let lane = this.#lanes.get(origin);
    if (lane && lane.count > MAX_WAITING_TRANSACTIONS_PER_ORIGIN) {
      return Promise.reject(
        new MatrixError("M_LIMIT_EXCEEDED", 429, "Too many transactions in flight", {
          retry_after_ms: 1_000,
        }),
      );
    }
    if (!lane) this.#lanes.set(origin, lane = { tail: Promise.resolve(), count: 0 });
    const current = lane;
    current.count++;
    const run = current.tail.then(work);
    current.tail = run.then(() => {}, () => {});
    return run.finally(() => {
      if (--current.count === 0 && this.#lanes.get(origin) === current) this.#lanes.delete(origin);
    });
  }

  async #receive(
    origin: string,
    txnId: string,
    txn: InboundTransaction,
  ): Promise<TransactionAnswer> {
    const stored = await this.deps.answers.answer(origin, txnId);
    if (stored && isJsonObject(stored.pdus)) return stored as TransactionAnswer;

    const byRoom = new Map<string, unknown[]>();
    const results: TransactionAnswer["pdus"] = {};
    for (const pdu of txn.pdus) {
      const roomId = isJsonObject(pdu) && typeof pdu.room_id === "string" ? pdu.room_id : undefined;
      if (roomId === undefined) {
        // Nameless: without a room there is no version, so no event ID to answer under.
        continue;
      }
      byRoom.set(roomId, [...(byRoom.get(roomId) ?? []), pdu]);
    }
    await Promise.all([...byRoom].map(async ([roomId, pdus]) => {
      const refusal = await this.#refusal(origin, roomId);
      const outcomes: PduOutcome[] = refusal !== undefined
        ? pdus.map((pdu) => ({ eventId: refusal.name(pdu), error: refusal.reason }))
        : await this.#handleRoom(origin, roomId, pdus);
      for (const outcome of outcomes) {
        if (outcome.eventId === "") continue;
        // A stored event was handled, whatever the checks decided (Synapse answers the same,
        // and senders, SyTest among them, read an error as a failure to deliver).
        results[outcome.eventId] = outcome.status !== undefined || outcome.error === undefined
          ? {}
          : { error: outcome.error.slice(0, MAX_ERROR_CHARS) };
      }
    }));
    if (this.deps.edus && txn.edus.length > 0) await this.deps.edus.receive(origin, txn.edus);
    const answer: TransactionAnswer = { pdus: results };
    await this.deps.answers.recordAnswer(origin, txnId, answer);
    return answer;
  }

  /** One room's PDUs in order: together when the handler can (shared commits), else one by one. */
  async #handleRoom(origin: string, roomId: string, pdus: unknown[]): Promise<PduOutcome[]> {
    const { pduInput } = this.deps;
    if (pduInput.handleAll) return await pduInput.handleAll(origin, roomId, pdus);
    const outcomes: PduOutcome[] = [];
    for (const pdu of pdus) outcomes.push(await this.#handle(origin, roomId, pdu));
    return outcomes;
  }

  async #handle(origin: string, roomId: string, pdu: unknown): Promise<PduOutcome> {
    try {
      return await this.deps.pduInput.handle(origin, roomId, pdu);
    } catch (error) {
      // Storage failing mid-way: the PDU is not stored; the sender sees why, as Synapse does.
      console.error("federation: handling a PDU failed", roomId, error);
      return { eventId: carriedEventId(pdu), error: "internal error handling the event" };
    }
  }

  /**
   * Why PDUs of `roomId` from `origin` are refused unseen, if they are, and how to name them:
   * in a room we do not know, only by the ID a v1/v2 event carries.
   */
  async #refusal(
    origin: string,
    roomId: string,
  ): Promise<{ reason: string; name: (pdu: unknown) => string } | undefined> {
    const head = await this.deps.store.roomHead(roomId);
    if (!head) return { reason: `this server is not in room ${roomId}`, name: carriedEventId };
    if (!(await this.#acl.allows(roomId, origin))) {
      const version = roomVersion(head.roomVersion);
      return {
        reason: `server ${origin} is denied by the room's server ACL`,
        name: (pdu) => (version ? nameOf(pdu, version) : carriedEventId(pdu)),
      };
    }
    return undefined;
  }
}

/** The event ID a PDU carries (rooms v1/v2), or "" when it carries none. */
function carriedEventId(pdu: unknown): string {
  return isJsonObject(pdu) && typeof pdu.event_id === "string" ? pdu.event_id : "";
}
