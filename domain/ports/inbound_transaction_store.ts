/**
 * Transactions other servers sent us (`PUT /_matrix/federation/v1/send/{txnId}`): a sender
 * retries a transaction until it gets an answer, and must get the same answer again rather
 * than have its PDUs handled twice. IDs are per origin: two servers may use the same one.
 */
import type { JsonObject } from "../protocol/json.ts";

/** Stored answers to transactions, by origin and transaction ID. */
export interface InboundTransactionStore {
  /** The answer given to `origin`'s transaction `txnId`; null when it was never answered. */
  answer(origin: string, txnId: string): Promise<JsonObject | null>;
  /** Keep the answer to `origin`'s transaction `txnId` for retries (for about a day). */
  recordAnswer(origin: string, txnId: string, answer: JsonObject): Promise<void>;
}
