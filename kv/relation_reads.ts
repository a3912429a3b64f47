/** Reads of the relation projections (kv/relation_projection.ts): the RelationReader port. */
import type { Direction } from "../domain/ports/event_store.ts";
import {
  type ChildrenPage,
  type RelationChild,
  type RelationReader,
  type RelationSummary,
  type ThreadActivity,
  threadReplyKey,
  type TimestampedEvent,
} from "../domain/ports/relation_store.ts";
import { getManyChunked } from "./get_many.ts";
import type { RelationRecord } from "./relation_projection.ts";
import type { EventStoreKeys } from "./schema.ts";
import { createStoreContext, type StoreContext } from "./store_context.ts";
import { firstPositionAfter } from "./timeline_reads.ts";
import { parseSyncToken, parseTimelineToken, timelineToken } from "./stream_tokens.ts";
import type { RoomHead } from "./store_records.ts";
import { FIRST_FORWARD_POSITION } from "./store_records.ts";

/** Largest page one list call reads (KV lists pages of at most 1,000). */
const MAX_LIST = 1000;

/** The relation projections of the live store. */
export class KvRelationReader implements RelationReader {
  readonly #keys: EventStoreKeys;
  readonly #ctx: StoreContext;

  /** Over the live (unnamespaced) event store maps of `kv`. */
  constructor(private readonly kv: Deno.Kv) {
    this.#ctx = createStoreContext(kv, {});
    this.#keys = this.#ctx.keys;
  }

  async children(
    roomId: string,
    parentId: string,
    options: { relType?: string; from?: string; to?: string; dir: Direction; limit: number },
  ): Promise<ChildrenPage> {
    const limit = Math.max(1, Math.min(options.limit, MAX_LIST - 1));
    const prefix = options.relType === undefined
      ? this.#keys.children(roomId, parentId)
      : this.#keys.typedChildren(roomId, parentId, options.relType);
    const from = options.from === undefined
      ? undefined
      : await this.positionOfToken(roomId, options.from);
    const to = options.to === undefined
      ? undefined
      : await this.positionOfToken(roomId, options.to);
    const selector: Deno.KvListSelector = from === undefined
      ? { prefix }
      : options.dir === "b"
      ? { prefix, end: [...prefix, from] }
      : { prefix, start: [...prefix, from] };
    const iter = this.kv.list<RelationRecord>(selector, {
      reverse: options.dir === "b",
      limit: limit + 1,
      batchSize: limit + 1,
    });
    const children: RelationChild[] = [];
    let more = false;
    for await (const entry of iter) {
      const position = entry.key[entry.key.length - 1] as number;
      if (to !== undefined && (options.dir === "b" ? position < to : position >= to)) break;
      if (children.length === limit) {
        more = true;
        break;
      }
      const { e, r, t, s } = entry.value;
      children.push({ eventId: e, position, relType: r, type: t, sender: s });
    }
    const page: ChildrenPage = { children };
    if (more) {
      const last = children[children.length - 1].position;
      page.next = timelineToken(options.dir === "b" ? last : last + 1);
    }
    return page;
  }

  async summaries(
    roomId: string,
    parentIds: readonly string[],
  ): Promise<Map<string, RelationSummary>> {
    const ids = [...new Set(parentIds)];
    const entries = await getManyChunked<RelationSummary>(
      this.kv,
      ids.map((id) => this.#keys.relationSummary(roomId, id)),
    );
    const out = new Map<string, RelationSummary>();
    entries.forEach((entry, i) => {
      if (entry.value) out.set(ids[i], entry.value);
    });
    return out;
  }

  async threadReplies(
    roomId: string,
    pairs: readonly { rootId: string; userId: string }[],
  ): Promise<Map<string, number>> {
    const entries = await getManyChunked<number>(
      this.kv,
      pairs.map((p) => this.#keys.threadReplies(roomId, p.rootId, p.userId)),
    );
    const out = new Map<string, number>();
    entries.forEach((entry, i) => {
      if (entry.value) out.set(threadReplyKey(pairs[i].rootId, pairs[i].userId), entry.value);
    });
    return out;
  }

  async threadsByActivity(
    roomId: string,
    options: { before?: number; limit: number },
  ): Promise<ThreadActivity[]> {
    const prefix = this.#keys.threadActivity(roomId);
    const selector: Deno.KvListSelector = options.before === undefined
      ? { prefix }
      : { prefix, end: this.#keys.threadActivity(roomId, options.before) };
    const limit = Math.max(1, Math.min(options.limit, MAX_LIST));
    const out: ThreadActivity[] = [];
    for await (
      const entry of this.kv.list<true>(selector, { reverse: true, limit, batchSize: limit })
    ) {
      const n = entry.key.length;
      out.push({ rootId: entry.key[n - 1] as string, position: entry.key[n - 2] as number });
    }
    return out;
  }

  async eventsByTimestamp(
    roomId: string,
    ts: number,
    dir: Direction,
    limit: number,
  ): Promise<TimestampedEvent[]> {
    const prefix = this.#keys.timestampEvent(roomId);
    const selector: Deno.KvListSelector = dir === "f"
      ? { prefix, start: this.#keys.timestampEvent(roomId, ts) }
      : { prefix, end: this.#keys.timestampEvent(roomId, ts + 1) };
    const n = Math.max(1, Math.min(limit, MAX_LIST));
    const out: TimestampedEvent[] = [];
    for await (
      const entry of this.kv.list<string>(selector, {
        reverse: dir === "b",
        limit: n,
        batchSize: n,
      })
    ) {
      const k = entry.key.length;
      out.push({
        eventId: entry.value,
        ts: entry.key[k - 2] as number,
        position: entry.key[k - 1] as number,
      });
    }
    return out;
  }

  async positionOfToken(roomId: string, token: string): Promise<number> {
    if (!token.startsWith("s")) return parseTimelineToken(token);
    // A sync token (next_batch) is the boundary after the last event that sync saw, as
    // /messages takes it.
    const since = parseSyncToken(token);
    const head = (await this.kv.get<RoomHead>(this.#keys.head(roomId))).value;
    const liveEnd = (head?.last ?? FIRST_FORWARD_POSITION - 1) + 1;
    return await firstPositionAfter(this.#ctx, roomId, since, liveEnd);
  }
}
