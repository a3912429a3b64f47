/**
 * Bundled aggregations (client-server spec, "Aggregations of child events"): the
 * `unsigned["m.relations"]` the read pipeline attaches, in its format step, to the events it
 * puts out to a client:
 *
 * - `m.replace`: the most recent valid edit (same sender and type as the original, no state
 *   key, `m.new_content` unless encrypted; latest by origin_server_ts, then event ID), as a whole
 *   client event (v1.7+), and none when the original is redacted;
 * - `m.thread`: `latest_event`, `count` and `current_user_participated`;
 * - `m.reference`: `chunk` of the referring event IDs.
 *
 * Every child shown or counted is one the reader may see: children go through the same
 * pipeline (history visibility, redaction, ignored users) before they are chosen, so an edit or
 * a reply from history the reader cannot see, a redacted one, or one from an ignored user is
 * neither bundled nor counted. The projection's summaries (kv/relation_projection.ts) make the
 * common case cheap: one `getMany` per ten events says which have children, and a thread whose
 * replies all came after the reader's current join is counted from its summary (minus ignored
 * users' replies) without loading them. Otherwise the newest replies are loaded and checked.
 */
import { isJsonObject, type JsonObject } from "../json.ts";
import type { EventReader, StoredEvent } from "../ports/event_store.ts";
import {
  type RelationReader,
  type RelationSummary,
  threadReplyKey,
} from "../ports/relation_store.ts";
import { relationOf } from "../relations.ts";
import { membershipValue } from "./history_visibility_filter.ts";

/** Edits considered per original (the newest by arrival). */
const MAX_EDITS = 20;
/** References bundled per event (the newest by arrival). */
const MAX_REFERENCES = 50;
/**
 * Replies loaded when a thread's summary cannot be used (the reader cannot see the whole
 * thread, or its latest reply is hidden, redacted or from an ignored user): the newest ones;
 * the count then covers those only.
 */
const MAX_THREAD_REPLIES_CHECKED = 100;

/** A set of events run through the pipeline for the same reader: those kept, formatted. */
export type PipeEvents = (
  events: readonly StoredEvent[],
  nested: "edits" | "none",
) => Promise<Map<string, JsonObject>>;

/** Who reads, as the aggregations need it. */
export interface AggregationReader {
  userId: string;
  roomId: string;
  /** The reader's membership event as of the read (null: never had one). */
  membership: StoredEvent | null;
  ignored: ReadonlySet<string>;
}

/** Computes the `m.relations` bundles of events a reader is shown. */
export class RelationAggregator {
  /** Over the event store and the relation projections. */
  constructor(
    private readonly deps: { store: EventReader; relations: RelationReader },
  ) {}

  /**
   * The bundle of each of `parents` that has one, keyed by event ID. `redacted` are parents the
   * pipeline redacted (no edit is bundled with them); `only: "edits"` bundles edits alone (for
   * events that are themselves bundled, such as a thread's latest reply).
   */
  async bundles(
    reader: AggregationReader,
    parents: readonly StoredEvent[],
    redacted: ReadonlySet<string>,
    pipe: PipeEvents,
    only?: "edits",
  ): Promise<Map<string, JsonObject>> {
    const out = new Map<string, JsonObject>();
    // State events get no bundle, nor do edits and annotations themselves.
    const eligible = parents.filter((e) => {
      if (e.pdu.state_key !== undefined) return false;
      const own = relationOf(e.pdu.content, e.eventId)?.relType;
      return own !== "m.replace" && own !== "m.annotation";
    });
    if (eligible.length === 0) return out;
    const { relations } = this.deps;
    const summaries = await relations.summaries(reader.roomId, eligible.map((e) => e.eventId));
    if (summaries.size === 0) return out;
    const withChildren = eligible.filter((e) => summaries.has(e.eventId));
    const bundle = (id: string) => {
      let b = out.get(id);
      if (!b) out.set(id, b = {});
      return b;
    };
    const work: Promise<void>[] = [];
    for (const parent of withChildren) {
      const summary = summaries.get(parent.eventId)!;
      if ((summary.replace ?? 0) > 0 && !redacted.has(parent.eventId)) {
        work.push(
          this.#latestEdit(reader, parent, pipe).then((edit) => {
            if (edit) bundle(parent.eventId)["m.replace"] = edit;
          }),
        );
      }
      if (only === "edits") continue;
      if ((summary.reference ?? 0) > 0) {
        work.push(
          this.#references(reader, parent, pipe).then((chunk) => {
            if (chunk.length > 0) bundle(parent.eventId)["m.reference"] = { chunk };
          }),
        );
      }
      if (summary.thread && summary.thread.count > 0) {
        work.push(
          this.#thread(reader, parent, summary, pipe).then((thread) => {
            if (thread) bundle(parent.eventId)["m.thread"] = thread;
          }),
        );
      }
    }
    await Promise.all(work);
    return out;
  }

  /** Visible, unredacted children of one rel_type, newest first, formatted. */
  async #visibleChildren(
    reader: AggregationReader,
    parent: StoredEvent,
    relType: string,
    limit: number,
    pipe: PipeEvents,
    nested: "edits" | "none",
    accept: (child: StoredEvent) => boolean = () => true,
  ): Promise<{ event: StoredEvent; formatted: JsonObject }[]> {
    const page = await this.deps.relations.children(reader.roomId, parent.eventId, {
      relType,
      dir: "b",
      limit,
    });
    const ids = page.children.map((c) => c.eventId);
    if (ids.length === 0) return [];
    const found = await this.deps.store.getEvents(ids);
    const events = ids.flatMap((id) => {
      const e = found.get(id);
      return e && e.roomId === reader.roomId && e.status === "accepted" && accept(e) ? [e] : [];
    });
    const formatted = await pipe(events, nested);
    return events.flatMap((event) => {
      const f = formatted.get(event.eventId);
      // A redacted child lost its `m.relates_to`: it relates to nothing any more.
      return f && !isRedacted(f) ? [{ event, formatted: f }] : [];
    });
  }

  async #latestEdit(
    reader: AggregationReader,
    original: StoredEvent,
    pipe: PipeEvents,
  ): Promise<JsonObject | undefined> {
    const encrypted = original.pdu.type === "m.room.encrypted";
    const edits = await this.#visibleChildren(
      reader,
      original,
      "m.replace",
      MAX_EDITS,
      pipe,
      "none",
      (e) =>
        e.pdu.sender === original.pdu.sender && e.pdu.type === original.pdu.type &&
        e.pdu.state_key === undefined &&
        (encrypted || isJsonObject(e.pdu.content["m.new_content"])),
    );
    let best: { event: StoredEvent; formatted: JsonObject } | undefined;
    for (const edit of edits) {
      if (!best || newer(edit.event, best.event)) best = edit;
    }
    return best?.formatted;
  }

  async #references(
    reader: AggregationReader,
    parent: StoredEvent,
    pipe: PipeEvents,
  ): Promise<JsonObject[]> {
    const refs = await this.#visibleChildren(
      reader,
      parent,
      "m.reference",
      MAX_REFERENCES,
      pipe,
      "none",
    );
    return refs.reverse().map((r) => ({ event_id: r.event.eventId }));
  }

  async #thread(
    reader: AggregationReader,
    root: StoredEvent,
    summary: RelationSummary,
    pipe: PipeEvents,
  ): Promise<JsonObject | undefined> {
    const thread = summary.thread!;
    const { relations, store } = this.deps;
    const ignored = [...reader.ignored];
    const replies = await relations.threadReplies(reader.roomId, [
      { rootId: root.eventId, userId: reader.userId },
      ...ignored.map((userId) => ({ rootId: root.eventId, userId })),
    ]);
    const participated = root.pdu.sender === reader.userId ||
      (replies.get(threadReplyKey(root.eventId, reader.userId)) ?? 0) > 0;
    const membership = reader.membership;
    // Joined before the first reply: history visibility shows the reader every reply.
    const seesAll = membershipValue(membership) === "join" && membership !== null &&
      membership.position < thread.firstPosition;
    if (seesAll) {
      const latest = await store.getEvent(thread.latest);
      if (latest && latest.status === "accepted" && !reader.ignored.has(latest.pdu.sender)) {
        const formatted = (await pipe([latest], "edits")).get(latest.eventId);
        if (formatted && !isRedacted(formatted)) {
          let ignoredReplies = 0;
          for (const userId of ignored) {
            ignoredReplies += replies.get(threadReplyKey(root.eventId, userId)) ?? 0;
          }
          return {
            latest_event: formatted,
            count: Math.max(1, thread.count - ignoredReplies),
            current_user_participated: participated,
          };
        }
      }
    }
    const visible = await this.#visibleChildren(
      reader,
      root,
      "m.thread",
      MAX_THREAD_REPLIES_CHECKED,
      pipe,
      "edits",
    );
    if (visible.length === 0) return undefined;
    return {
      latest_event: visible[0].formatted,
      count: visible.length,
      current_user_participated: participated,
    };
  }
}

/** Whether the pipeline put the event out redacted. */
export function isRedacted(formatted: JsonObject): boolean {
  const unsigned = formatted.unsigned;
  return isJsonObject(unsigned) && unsigned.redacted_because !== undefined;
}

/** The spec's order of edits: origin_server_ts, then the lexicographically larger event ID. */
function newer(a: StoredEvent, b: StoredEvent): boolean {
  const ta = a.pdu.origin_server_ts;
  const tb = b.pdu.origin_server_ts;
  return ta !== tb ? ta > tb : a.eventId > b.eventId;
}
