/**
 * Receipts in KV: each user's latest receipt per (room, type, thread), a per-room change index,
 * and a per-room head whose versionstamp tells sync whether a room has new receipts at all.
 */
import {
  type Receipt,
  type ReceiptStore,
  receiptSupersedes,
  type ReceiptType,
} from "../domain/ports/receipt_store.ts";
import { getManyChunked } from "./get_many.ts";
import { receiptChangePrefix, receiptHeadKey, receiptKey, receiptPrefix } from "./schema.ts";
import { parseSyncToken } from "./stream_tokens.ts";
import { listChanges, writeVersioned } from "./versioned_records.ts";
import { addWakes } from "./wake_keys.ts";

/** The KV implementation of the receipt port. */
export class KvReceiptStore implements ReceiptStore {
  /** Store receipts in `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  async get(
    userId: string,
    roomId: string,
    receiptType: ReceiptType,
    threadId?: string,
  ): Promise<Receipt | null> {
    return (await this.kv.get<Receipt>(receiptKey(roomId, userId, receiptType, threadId))).value;
  }

  async latestReceipt(
    userId: string,
    roomId: string,
    threadId?: string,
  ): Promise<Receipt | null> {
    let latest: Receipt | null = null;
    for await (const entry of this.kv.list<Receipt>({ prefix: receiptPrefix(roomId, userId) })) {
      const r = entry.value;
      if (r.threadId !== undefined && r.threadId !== threadId) continue;
      if (!latest || r.position > latest.position) latest = r;
    }
    return latest;
  }

  put(receipt: Receipt): Promise<string | null> {
    const key = receiptKey(receipt.roomId, receipt.userId, receipt.receiptType, receipt.threadId);
    return writeVersioned<Receipt>(this.kv, key, (current) => {
      if (!receiptSupersedes(current, receipt)) return null;
      return {
        key,
        value: receipt,
        changePrefix: receiptChangePrefix(receipt.roomId),
        extra: (op) => {
          op.set(receiptHeadKey(receipt.roomId), true);
          // A public receipt is the room's news; a private one only its owner's syncs read.
          addWakes(
            op,
            receipt.receiptType === "m.read"
              ? { roomIds: [receipt.roomId] }
              : { userIds: [receipt.userId] },
          );
        },
      };
    });
  }

  async changes(
    roomIds: readonly string[],
    options: { since?: string; upTo: string },
  ): Promise<Map<string, Receipt[]>> {
    const { since, upTo } = options;
    const sinceStamp = since === undefined ? undefined : parseSyncToken(since);
    const heads = await getManyChunked<true>(this.kv, roomIds.map(receiptHeadKey));
    const changed = roomIds.filter((_, i) => {
      const stamp = heads[i].versionstamp;
      return stamp !== null && (sinceStamp === undefined || stamp > sinceStamp);
    });
    const out = new Map<string, Receipt[]>();
    await Promise.all(changed.map(async (roomId) => {
      const changes = await listChanges<Receipt>(this.kv, receiptChangePrefix(roomId), since, upTo);
      if (changes.length > 0) out.set(roomId, changes.map((c) => c.value));
    }));
    return out;
  }
}
