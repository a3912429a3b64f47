/**
 * Answers to other servers' transactions in KV (`origintxnid_answer`), as UTF-8 JSON bytes with
 * an expiry: a retry comes within minutes, never days, so a day is plenty.
 */
import { isJsonObject, type JsonObject } from "../domain/protocol/json.ts";
import type { InboundTransactionStore } from "../domain/ports/inbound_transaction_store.ts";
import { inboundTransactionKeys } from "./schema.ts";

/** How long an answer is kept for retries. */
const ANSWER_LIFETIME_MS = 24 * 60 * 60 * 1000;

/** The KV implementation of InboundTransactionStore. */
export class KvInboundTransactionStore implements InboundTransactionStore {
  /** Over an open KV database. */
  constructor(private readonly kv: Deno.Kv) {}

  /** See InboundTransactionStore.answer. */
  async answer(origin: string, txnId: string): Promise<JsonObject | null> {
    const entry = await this.kv.get<Uint8Array>(inboundTransactionKeys.answer(origin, txnId));
    if (!(entry.value instanceof Uint8Array)) return null;
    const parsed = JSON.parse(new TextDecoder().decode(entry.value));
    return isJsonObject(parsed) ? parsed : null;
  }

  /** See InboundTransactionStore.recordAnswer. */
  async recordAnswer(origin: string, txnId: string, answer: JsonObject): Promise<void> {
    await this.kv.set(
      inboundTransactionKeys.answer(origin, txnId),
      new TextEncoder().encode(JSON.stringify(answer)),
      { expireIn: ANSWER_LIFETIME_MS },
    );
  }
}
