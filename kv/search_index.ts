/** Reads of the full-text search index (`roomid_searchterm`, see kv/search_projection.ts). */
import type { SearchIndexReader, SearchPosting } from "../domain/ports/search_index.ts";
import type { StoredEvent } from "../domain/ports/event_store.ts";
import { decodeLogEntry } from "./event_reads.ts";
import { getManyChunked } from "./get_many.ts";
import type { SearchPostingRecord } from "./search_projection.ts";
import type { StoreContext } from "./store_context.ts";
import type { LogEntry } from "./store_records.ts";

/**
 * Sorts after every string that starts with a prefix: KV orders strings by their UTF-8 bytes,
 * and U+10FFFF encodes highest (terms never hold it: it is not word-like).
 */
const AFTER_PREFIX = "\u{10FFFF}";

/** The search index over the event store's KV (and its namespace). */
export class KvSearchIndex implements SearchIndexReader {
  constructor(private readonly ctx: StoreContext) {}

  /**
   * See SearchIndexReader.postings. Read backwards: within one term the newest positions come
   * first, so a term too common to read whole still finds its recent events.
   */
  async postings(
    roomId: string,
    prefix: string,
    limit: number,
  ): Promise<{ postings: SearchPosting[]; more: boolean }> {
    const keys = this.ctx.keys;
    const iter = this.ctx.kv.list<SearchPostingRecord>({
      start: keys.searchTermPrefix(roomId, prefix),
      end: keys.searchTermPrefix(roomId, prefix + AFTER_PREFIX),
    }, { limit: limit + 1, batchSize: Math.min(limit + 1, 1000), reverse: true });
    const postings: SearchPosting[] = [];
    for await (const entry of iter) {
      if (postings.length === limit) return { postings, more: true };
      const term = entry.key[entry.key.length - 2] as string;
      const position = entry.key[entry.key.length - 1] as number;
      const [key, ts, count, words] = entry.value;
      postings.push({ roomId, position, term, key, ts, count, words });
    }
    return { postings, more: false };
  }

  /** See SearchIndexReader.eventsAt. */
  async eventsAt(roomId: string, positions: readonly number[]): Promise<Map<number, StoredEvent>> {
    const unique = [...new Set(positions)];
    const entries = await getManyChunked<LogEntry>(
      this.ctx.kv,
      unique.map((p) => this.ctx.keys.log(roomId, p)),
    );
    const out = new Map<number, StoredEvent>();
    await Promise.all(entries.map(async (entry, i) => {
      if (!entry.value || entry.versionstamp === null) return;
      out.set(
        unique[i],
        await decodeLogEntry(this.ctx, roomId, unique[i], entry.value, entry.versionstamp),
      );
    }));
    return out;
  }
}
