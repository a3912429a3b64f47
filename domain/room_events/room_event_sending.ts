/**
 * Client sends of room events: messages and redactions under a transaction ID (idempotent per
 * user, device and txnId), and state events. Every event goes through the LocalEventSender, so
 * the same auth rules as federation apply and a refused event writes nothing.
 */
import { MatrixError } from "../errors.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { LocalEventSender } from "../local_event_sender.ts";
import type { EventReader } from "../ports/event_store.ts";
import type { TransactionStore } from "../ports/transaction_store.ts";
import { UnknownRedactionTarget } from "../protocol/redaction_auth_rules.ts";
import { identicalCurrentState } from "./identical_state.ts";
import { type RelationValidationDeps, validateNewRelation } from "./relation_validation.ts";

/** What sending needs. */
export interface RoomEventSendingDeps {
  sender: LocalEventSender;
  transactions: TransactionStore;
  /**
   * Current state, so a state send that changes nothing returns the existing event; parents of
   * relations, which are checked before sending (relation_validation.ts).
   */
  store: Pick<
    EventReader,
    "currentStateEventIds" | "getEvents" | "getEvent" | "redactionsOf"
  >;
  /** Relation projections, for the checks of a new event's relation. */
  relations: RelationValidationDeps["relations"];
}

/** One send under a transaction ID. */
export interface TransactionalSend {
  userId: string;
  deviceId: string;
  txnId: string;
  roomId: string;
  type: string;
  content: JsonObject;
  redacts?: string;
}

/** Conflicting commits retried before giving up (each retry first looks the txnId up again). */
const MAX_TXN_ATTEMPTS = 3;

/** Sends client events into rooms. */
export class RoomEventSending {
  /** Sends in flight per (user, device, txnId), so duplicates in one process share one send. */
  readonly #inFlight = new Map<string, Promise<string>>();

  /** Sending over the local sender and transaction records. */
  constructor(private readonly deps: RoomEventSendingDeps) {}

  /** Send a message-like event (or a redaction); a retried txnId returns the first event ID. */
  sendTransactional(request: TransactionalSend): Promise<string> {
    const key = JSON.stringify([request.userId, request.deviceId, request.txnId]);
    const running = this.#inFlight.get(key);
    if (running) return running;
    const promise = this.#sendOnce(request).finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, promise);
    return promise;
  }

  /**
   * Send a message-like event without a transaction ID (the legacy `POST /send/{eventType}`,
   * which Synapse still serves): every request is a new event, as that form promises nothing else.
   */
  async sendUntracked(request: {
    userId: string;
    roomId: string;
    type: string;
    content: JsonObject;
  }): Promise<string> {
    await this.#validateRelation(request);
    const sent = await this.#send(() =>
      this.deps.sender.send({
        roomId: request.roomId,
        sender: request.userId,
        type: request.type,
        content: request.content,
      })
    );
    return sent.eventId;
  }

  /** A relation to a parent that is unknown, elsewhere, or may not have it: 400, nothing sent. */
  #validateRelation(
    request: { roomId: string; userId: string; type: string; content: JsonObject },
  ) {
    return validateNewRelation(this.deps, {
      roomId: request.roomId,
      sender: request.userId,
      type: request.type,
      content: request.content,
    });
  }

  /**
   * Send a state event; returns its event ID. The same content from the same sender as the
   * current state returns the current event instead, as Synapse does.
   */
  async sendState(request: {
    userId: string;
    roomId: string;
    type: string;
    stateKey: string;
    content: JsonObject;
  }): Promise<string> {
    const existing = await identicalCurrentState(this.deps.store, {
      roomId: request.roomId,
      sender: request.userId,
      type: request.type,
      stateKey: request.stateKey,
      content: request.content,
    });
    if (existing !== null) return existing;
    const sent = await this.#send(() =>
      this.deps.sender.send({
        roomId: request.roomId,
        sender: request.userId,
        type: request.type,
        stateKey: request.stateKey,
        content: request.content,
      })
    );
    return sent.eventId;
  }

  async #sendOnce(request: TransactionalSend): Promise<string> {
    const { transactions } = this.deps;
    for (let attempt = 0; attempt < MAX_TXN_ATTEMPTS; attempt++) {
      const existing = await transactions.lookup(request.userId, request.deviceId, request.txnId);
      if (existing) return existing.eventId;
      // After the lookup: a retried transaction returns its event even where a check would
      // refuse it now (its own reaction would count as a repeat).
      if (attempt === 0) await this.#validateRelation(request);
      try {
        const sent = await this.#send(() =>
          this.deps.sender.send({
            roomId: request.roomId,
            sender: request.userId,
            type: request.type,
            content: request.content,
            redacts: request.redacts,
            extraMutations: (appended) =>
              transactions.recordMutations(request.userId, request.deviceId, request.txnId, {
                roomId: request.roomId,
                eventId: appended.eventId,
              }),
          })
        );
        return sent.eventId;
      } catch (error) {
        // 409: a check of the commit failed: another process recorded this txnId first (the
        // lookup above then finds it), or a batch-mate's check failed and we simply resend.
        if (!(error instanceof MatrixError) || error.status !== 409) throw error;
      }
    }
    throw new MatrixError("M_UNKNOWN", 503, "Could not record the transaction; try again");
  }

  /** Run a send; an unknown room is M_FORBIDDEN, as for a room the user is not in. */
  async #send<T>(send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (error) {
      if (
        error instanceof MatrixError && error.errcode === "M_NOT_FOUND" &&
        !(error instanceof UnknownRedactionTarget)
      ) {
        throw new MatrixError("M_FORBIDDEN", 403, "You are not in this room");
      }
      throw error;
    }
  }
}
