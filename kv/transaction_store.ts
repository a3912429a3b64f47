/** Deno KV implementation of the TransactionStore port. */
import type { CommitMutation } from "../domain/ports/event_store.ts";
import type { TransactionRecord, TransactionStore } from "../domain/ports/transaction_store.ts";
import { getManyChunked } from "./get_many.ts";
import { eventTransactionKey, transactionKey } from "./schema.ts";

type CommitKey = CommitMutation["key"];

interface StoredTransaction {
  room_id: string;
  event_id: string;
}

/** Transaction IDs in KV: both directions are written with the event they name. */
export class KvTransactionStore implements TransactionStore {
  /** Store over `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  /** See TransactionStore.lookup. */
  async lookup(userId: string, deviceId: string, txnId: string): Promise<TransactionRecord | null> {
    const entry = await this.kv.get<StoredTransaction>(transactionKey(userId, deviceId, txnId));
    return entry.value ? { roomId: entry.value.room_id, eventId: entry.value.event_id } : null;
  }

  /** See TransactionStore.recordMutations. */
  recordMutations(
    userId: string,
    deviceId: string,
    txnId: string,
    record: TransactionRecord,
  ): CommitMutation[] {
    // Our keys never hold symbols, which is all that separates KvKey from the port's key type.
    const key = transactionKey(userId, deviceId, txnId) as CommitKey;
    const value: StoredTransaction = { room_id: record.roomId, event_id: record.eventId };
    return [
      { op: "check", key, versionstamp: null },
      { op: "set", key, value },
      { op: "set", key: eventTransactionKey(record.eventId, deviceId) as CommitKey, value: txnId },
    ];
  }

  /** See TransactionStore.transactionIdFor. */
  async transactionIdFor(eventId: string, deviceId: string): Promise<string | null> {
    return (await this.kv.get<string>(eventTransactionKey(eventId, deviceId))).value;
  }

  /** See TransactionStore.transactionIdsFor. */
  async transactionIdsFor(
    eventIds: readonly string[],
    deviceId: string,
  ): Promise<Map<string, string>> {
    const ids = [...new Set(eventIds)];
    const entries = await getManyChunked<string>(
      this.kv,
      ids.map((id) => eventTransactionKey(id, deviceId)),
    );
    const out = new Map<string, string>();
    entries.forEach((entry, i) => {
      if (entry.value !== null) out.set(ids[i], entry.value);
    });
    return out;
  }
}
