/**
 * The relation projections of one append batch, planned beside the rest in projections.ts and
 * written in the same commit, so replay rebuilds them from the log:
 *
 * - `roomid_tsevent`: every accepted event by (origin_server_ts, position), for
 *   /timestamp_to_event (one write per accepted event);
 * - `roomeventid_children` and `roomeventidreltype_children`: every accepted child of a parent
 *   by position, all at once and per rel_type (two writes per relation);
 * - `roomeventid_relationsummary`: per parent, the counts of edits and references and the
 *   thread summary (count, latest reply, first and last positions) bundled aggregations start
 *   from, so a page of events needs one `getMany` per ten to learn which have children;
 * - `roomeventiduser_threadreplies`: replies per user and thread (`current_user_participated`,
 *   and subtracting ignored users' replies from the count);
 * - `roomid_threadactivity`: threads by their latest reply's position, for /threads.
 *
 * Counts are read under the head the commit checks and rewritten whole (appends to a room are
 * serialised), and depend only on the log's order, so replay reproduces them exactly.
 */
import type { RoomEvent } from "../domain/protocol/events.ts";
import type { RelationSummary, ThreadSummary } from "../domain/ports/relation_store.ts";
import { isAggregatedRelType, relationOf } from "../domain/protocol/relations.ts";
import type { PlannedMutation } from "./commit_budget.ts";
import { getManyChunked } from "./get_many.ts";
import type { StoreContext } from "./store_context.ts";

/** One child as stored in the children maps (short names: one per relation, twice). */
export interface RelationRecord {
  /** The child's event ID. */
  e: string;
  /** rel_type. */
  r: string;
  /** Event type. */
  t: string;
  /** Sender. */
  s: string;
}

/** What a batch planner answers about events, planned in the batch or committed. */
export interface RelationLookups {
  /** An accepted event of this room by ID (planned or stored); undefined otherwise. */
  acceptedEvent(eventId: string): Promise<RoomEvent | undefined>;
  /**
   * Whether an accepted redaction naming `eventId` that takes effect on it (as reads decide:
   * kv/redaction_effects.ts) is planned or stored already.
   */
  redactionNamed(eventId: string): Promise<boolean>;
}

/** Earlier replies checked for a new latest when a thread's latest reply is redacted. */
const LATEST_CANDIDATES = 20;

/** The relation writes of one batch; see the module comment. */
export class RelationPlan {
  #timestamps: [number, number, string][] = [];
  #children: [string, number, RelationRecord][] = [];
  /** Summaries the batch changed (null: delete), read once from KV before the first change. */
  #summaries = new Map<string, RelationSummary | null>();
  /** Committed latest positions of threads whose activity key moves (null: none yet). */
  #activityFrom = new Map<string, number | null>();
  #replies = new Map<string, number>();

  /** A plan for `roomId`'s batch over the store context. */
  constructor(private readonly ctx: StoreContext, private readonly roomId: string) {}

  /** A copy to plan the next request on (see RoomBatchPlanner.fork). */
  fork(): RelationPlan {
    const copy = new RelationPlan(this.ctx, this.roomId);
    copy.#timestamps = [...this.#timestamps];
    copy.#children = [...this.#children];
    copy.#summaries = new Map(
      [...this.#summaries].map(([k, v]) => [k, v && structuredClone(v)]),
    );
    copy.#activityFrom = new Map(this.#activityFrom);
    copy.#replies = new Map(this.#replies);
    return copy;
  }

  /** Index an accepted event (forward or backfilled) at `position`. */
  async noteEvent(event: RoomEvent, position: number, lookups: RelationLookups): Promise<void> {
    if (Number.isSafeInteger(event.origin_server_ts)) {
      this.#timestamps.push([event.origin_server_ts, position, event.event_id]);
    }
    const relation = relationOf(event.content, event.event_id);
    if (!relation) return;
    const record: RelationRecord = {
      e: event.event_id,
      r: relation.relType,
      t: event.type,
      s: event.sender,
    };
    this.#children.push([relation.eventId, position, record]);
    if (!isAggregatedRelType(relation.relType)) return;
    // The three reads at once: each is a KV round trip on the append path.
    const thread = relation.relType === "m.thread";
    const replyKey = `${relation.eventId}\n${event.sender}`;
    const [redacted, found, replies] = await Promise.all([
      lookups.redactionNamed(event.event_id),
      this.#summary(relation.eventId),
      thread ? this.#repliesOf(relation.eventId, event.sender, replyKey) : 0,
    ]);
    // A redaction that arrived first (over federation) already took this child out.
    if (redacted) return;
    const summary = found ?? {};
    if (relation.relType === "m.replace") summary.replace = (summary.replace ?? 0) + 1;
    else if (relation.relType === "m.reference") summary.reference = (summary.reference ?? 0) + 1;
    else {
      this.#noteThreadReply(relation.eventId, summary, event, position);
      this.#replies.set(replyKey, replies + 1);
    }
    this.#summaries.set(relation.eventId, summary);
  }

  /**
   * The first accepted redaction naming `targetId` that takes effect (the planner decides it as
   * reads do) takes the target out of its parent's counts. Reads
   * skip redacted children anyway; the counts are what a page of events reads without loading
   * each child.
   */
  async noteFirstRedaction(targetId: string, lookups: RelationLookups): Promise<void> {
    const target = await lookups.acceptedEvent(targetId);
    if (!target) return;
    const relation = relationOf(target.content, target.event_id);
    if (!relation || !isAggregatedRelType(relation.relType)) return;
    const summary = await this.#summary(relation.eventId);
    if (!summary) return;
    if (relation.relType === "m.replace") summary.replace = Math.max(0, (summary.replace ?? 0) - 1);
    else if (relation.relType === "m.reference") {
      summary.reference = Math.max(0, (summary.reference ?? 0) - 1);
    } else if (summary.thread) {
      const thread = summary.thread;
      if (!this.#activityFrom.has(relation.eventId)) {
        this.#activityFrom.set(relation.eventId, thread.latestPosition);
      }
      thread.count = Math.max(0, thread.count - 1);
      const key = `${relation.eventId}\n${target.sender}`;
      const replies = await this.#repliesOf(relation.eventId, target.sender, key);
      this.#replies.set(key, Math.max(0, replies - 1));
      if (thread.latest === targetId && thread.count > 0) {
        await this.#retreatLatest(relation.eventId, thread, lookups);
      }
    }
    this.#summaries.set(relation.eventId, summary);
  }

  /**
   * The thread's latest reply was redacted: the latest becomes the reply before it that no
   * redaction names (of the LATEST_CANDIDATES before it, committed or planned in this batch),
   * so reads keep their cheap path and /threads orders the thread by what is left. When none
   * is found the latest stays, and reads find the visible one themselves.
   */
  async #retreatLatest(
    rootId: string,
    thread: ThreadSummary,
    lookups: RelationLookups,
  ): Promise<void> {
    const keys = this.ctx.keys;
    const candidates: [number, string][] = [];
    const iter = this.ctx.kv.list<RelationRecord>({
      prefix: keys.typedChildren(this.roomId, rootId, "m.thread"),
      end: keys.typedChildren(this.roomId, rootId, "m.thread", thread.latestPosition),
    }, { reverse: true, limit: LATEST_CANDIDATES });
    for await (const entry of iter) {
      candidates.push([entry.key[entry.key.length - 1] as number, entry.value.e]);
    }
    for (const [parentId, position, record] of this.#children) {
      if (parentId === rootId && record.r === "m.thread" && position < thread.latestPosition) {
        candidates.push([position, record.e]);
      }
    }
    candidates.sort((a, b) => b[0] - a[0]);
    const checked = candidates.slice(0, LATEST_CANDIDATES);
    const redacted = await Promise.all(checked.map(([, id]) => lookups.redactionNamed(id)));
    const index = redacted.indexOf(false);
    if (index === -1) return;
    thread.latestPosition = checked[index][0];
    thread.latest = checked[index][1];
  }

  #noteThreadReply(
    rootId: string,
    summary: RelationSummary,
    event: RoomEvent,
    position: number,
  ): void {
    const thread: ThreadSummary = summary.thread ?? {
      count: 0,
      latest: event.event_id,
      latestPosition: position,
      firstPosition: position,
    };
    if (!this.#activityFrom.has(rootId)) {
      this.#activityFrom.set(rootId, summary.thread ? summary.thread.latestPosition : null);
    }
    thread.count++;
    if (position >= thread.latestPosition) {
      thread.latest = event.event_id;
      thread.latestPosition = position;
    }
    thread.firstPosition = Math.min(thread.firstPosition, position);
    summary.thread = thread;
  }

  async #summary(parentId: string): Promise<RelationSummary | null> {
    if (this.#summaries.has(parentId)) return this.#summaries.get(parentId)!;
    const entry = await this.ctx.kv.get<RelationSummary>(
      this.ctx.keys.relationSummary(this.roomId, parentId),
    );
    const summary = entry.value;
    this.#summaries.set(parentId, summary);
    return summary;
  }

  async #repliesOf(rootId: string, userId: string, key: string): Promise<number> {
    const planned = this.#replies.get(key);
    if (planned !== undefined) return planned;
    const [entry] = await getManyChunked<number>(this.ctx.kv, [
      this.ctx.keys.threadReplies(this.roomId, rootId, userId),
    ]);
    return entry.value ?? 0;
  }

  /** Every write of the plan. */
  mutations(): PlannedMutation[] {
    const keys = this.ctx.keys;
    const room = this.roomId;
    const out: PlannedMutation[] = [];
    for (const [ts, position, eventId] of this.#timestamps) {
      out.push({ op: "set", key: keys.timestampEvent(room, ts, position), value: eventId });
    }
    for (const [parentId, position, record] of this.#children) {
      out.push({ op: "set", key: keys.children(room, parentId, position), value: record });
      out.push({
        op: "set",
        key: keys.typedChildren(room, parentId, record.r, position),
        value: record,
      });
    }
    for (const [parentId, summary] of this.#summaries) {
      if (summary === null) continue; // read, never changed
      out.push({ op: "set", key: keys.relationSummary(room, parentId), value: summary });
    }
    for (const [rootId, from] of this.#activityFrom) {
      const thread = this.#summaries.get(rootId)?.thread;
      // A thread whose every reply was redacted leaves the activity order.
      const to = thread && thread.count > 0 ? thread.latestPosition : null;
      if (to === from) continue;
      if (from !== null) out.push({ op: "delete", key: keys.threadActivity(room, from, rootId) });
      if (to !== null) {
        out.push({ op: "set", key: keys.threadActivity(room, to, rootId), value: true });
      }
    }
    for (const [key, count] of this.#replies) {
      const [rootId, userId] = splitReplyKey(key);
      const kvKey = keys.threadReplies(room, rootId, userId);
      out.push(
        count === 0 ? { op: "delete", key: kvKey } : { op: "set", key: kvKey, value: count },
      );
    }
    return out;
  }
}

function splitReplyKey(key: string): [string, string] {
  const at = key.indexOf("\n");
  return [key.slice(0, at), key.slice(at + 1)];
}
