/**
 * The remote device-list cache in KV: one record per remote user holding their whole cached
 * list as UTF-8 JSON (the first chunk in the record, the rest under continuation keys named by
 * the write that made them, so a reader racing a rewrite notices instead of mixing two lists).
 *
 * A write goes through `commitWithDeviceListChanges` (kv/device_list_log.ts): a change local
 * clients must hear of is logged as a device-list update of the remote user in the same commit
 * (the server-wide change index sync reads, and the user's own log, whose head the commit
 * checks, so two writers of one user serialise even when neither logs).
 */
import type {
  RemoteDeviceList,
  RemoteDeviceListDecision,
  RemoteDeviceStore,
} from "../domain/ports/remote_device_store.ts";
import { decodeJson, encodeJson, joinChunks, splitChunks } from "./chunked_value.ts";
import { commitWithDeviceListChanges } from "./device_list_log.ts";
import { getManyChunked } from "./get_many.ts";
import { e2eeKeys } from "./schema.ts";

/** The stored record of one user's list. */
interface RemoteDeviceListRecord {
  writeId: string;
  chunks: number;
  first: Uint8Array;
}

/**
 * Most chunks of one list (about 480 KB): with the log entries it stays within one commit's
 * 800 KiB. The domain keeps lists well below (remote_device_cache.ts drops larger ones).
 */
export const MAX_REMOTE_DEVICE_LIST_CHUNKS = 8;

/** Reads of a record and its chunks before giving up on a list rewritten under every read. */
const READ_ATTEMPTS = 5;

/** `RemoteDeviceStore` over one KV database. */
export class KvRemoteDeviceStore implements RemoteDeviceStore {
  /** Over `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  async get(userIds: readonly string[]): Promise<Map<string, RemoteDeviceList>> {
    const unique = [...new Set(userIds)];
    const entries = await getManyChunked<RemoteDeviceListRecord>(
      this.kv,
      unique.map((id) => e2eeKeys.remoteDeviceList(id)),
    );
    const out = new Map<string, RemoteDeviceList>();
    await Promise.all(unique.map(async (userId, i) => {
      let entry = entries[i];
      for (let attempt = 0; entry.value !== null; attempt++) {
        const list = await this.#decode(userId, entry.value);
        if (list !== null) {
          out.set(userId, list);
          return;
        }
        if (attempt + 1 >= READ_ATTEMPTS) throw new Error(`cached devices of ${userId} torn`);
        entry = await this.kv.get<RemoteDeviceListRecord>(e2eeKeys.remoteDeviceList(userId));
      }
    }));
    return out;
  }

  async modify<T>(
    userId: string,
    decide: (current: RemoteDeviceList | null) => RemoteDeviceListDecision<T>,
  ): Promise<{ result: T; versionstamp: string | null }> {
    let result: T | undefined;
    let decided = false;
    const committed = await commitWithDeviceListChanges(this.kv, async (op, changes) => {
      const { entry, list } = await this.#read(userId);
      const decision = decide(list);
      result = decision.result;
      decided = true;
      if (decision.write === undefined) return null;
      const { next, log } = decision.write;
      op.check(entry);
      for await (
        const chunk of this.kv.list({ prefix: e2eeKeys.remoteDeviceListChunkPrefix(userId) })
      ) op.delete(chunk.key);
      if (next === null) op.delete(e2eeKeys.remoteDeviceList(userId));
      else this.#stage(op, next);
      if (log !== null) changes.add(userId, log);
      return true;
    });
    if (!decided) throw new Error("remote device list decision missing");
    return { result: result as T, versionstamp: committed?.versionstamp ?? null };
  }

  async drop(userIds: readonly string[]): Promise<void> {
    for (const userId of new Set(userIds)) {
      const op = this.kv.atomic().delete(e2eeKeys.remoteDeviceList(userId));
      for await (
        const chunk of this.kv.list({ prefix: e2eeKeys.remoteDeviceListChunkPrefix(userId) })
      ) op.delete(chunk.key);
      await op.commit();
    }
  }

  /** Stage `list` under a fresh write ID. */
  #stage(op: Deno.AtomicOperation, list: RemoteDeviceList): void {
    const chunks = splitChunks(encodeJson(list));
    if (chunks.length > MAX_REMOTE_DEVICE_LIST_CHUNKS) {
      throw new Error(`cached device list of ${list.userId} too large (${chunks.length} chunks)`);
    }
    const writeId = crypto.randomUUID();
    op.set(
      e2eeKeys.remoteDeviceList(list.userId),
      {
        writeId,
        chunks: chunks.length,
        first: chunks[0],
      } satisfies RemoteDeviceListRecord,
    );
    chunks.slice(1).forEach((chunk, i) =>
      op.set(e2eeKeys.remoteDeviceListChunk(list.userId, writeId, i + 1), chunk)
    );
  }

  /** The record (to check) and its decoded list, re-read while a rewrite tears it. */
  async #read(
    userId: string,
  ): Promise<{ entry: Deno.KvEntryMaybe<RemoteDeviceListRecord>; list: RemoteDeviceList | null }> {
    for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
      const entry = await this.kv.get<RemoteDeviceListRecord>(e2eeKeys.remoteDeviceList(userId));
      if (entry.value === null) return { entry, list: null };
      const list = await this.#decode(userId, entry.value);
      if (list !== null) return { entry, list };
    }
    throw new Error(`cached devices of ${userId} torn`);
  }

  /** The list a record holds; null when its chunks were replaced meanwhile (read again). */
  async #decode(userId: string, record: RemoteDeviceListRecord): Promise<RemoteDeviceList | null> {
    if (record.chunks <= 1) return decodeJson<RemoteDeviceList>(record.first);
    const chunks = [record.first];
    const prefix = e2eeKeys.remoteDeviceListChunkPrefix(userId, record.writeId);
    for await (const entry of this.kv.list<Uint8Array>({ prefix })) chunks.push(entry.value);
    if (chunks.length !== record.chunks) return null;
    return decodeJson<RemoteDeviceList>(joinChunks(chunks));
  }
}
