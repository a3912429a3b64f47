/**
 * Client transaction IDs: a send retried with the same (user, device, txnId) must return the
 * first event, and the sending device sees its txnId in `unsigned.transaction_id`.
 */
import type { CommitMutation } from "./event_store.ts";

/** The event a transaction ID produced. */
export interface TransactionRecord {
  roomId: string;
  eventId: string;
}

/** Storage of transaction IDs; the records ride in the event's own commit. */
export interface TransactionStore {
  /** The event a device already sent under `txnId`; null when none. */
  lookup(userId: string, deviceId: string, txnId: string): Promise<TransactionRecord | null>;
  /**
   * Mutations recording `txnId` -> event and event -> txnId, to join the event's commit. They
   * check the transaction key is still absent, so a concurrent duplicate fails its commit.
   */
  recordMutations(
    userId: string,
    deviceId: string,
    txnId: string,
    record: TransactionRecord,
  ): CommitMutation[];
  /** The transaction ID under which `deviceId` sent `eventId`; null when it did not. */
  transactionIdFor(eventId: string, deviceId: string): Promise<string | null>;
  /** Transaction IDs of several events for one device; events without one are absent. */
  transactionIdsFor(eventIds: readonly string[], deviceId: string): Promise<Map<string, string>>;
}
