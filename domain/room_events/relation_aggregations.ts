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
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import type { EventReader, StoredEvent } from "../ports/event_store.ts";
import { type RelationReader, threadReplyKey } from "../ports/relation_store.ts";
import { relationOf } from "../protocol/relations.ts";
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

/** A child listed for a parent, loaded. */
interface Loaded {
  parent: StoredEvent;
  events: StoredEvent[];
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
   * events that are themselves bundled, such as a thread's latest reply). The reads are made
   * for all parents at once, and children go through the pipeline in at most three passes per
   * call, however many parents have children.
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
    const summaryOf = (e: StoredEvent) => summaries.get(e.eventId);
    const withChildren = eligible.filter((e) => summaries.has(e.eventId));
    const edited = withChildren.filter((e) =>
      (summaryOf(e)!.replace ?? 0) > 0 && !redacted.has(e.eventId)
    );
    const referenced = only ? [] : withChildren.filter((e) => (summaryOf(e)!.reference ?? 0) > 0);
    const threads = only ? [] : withChildren.filter((e) => (summaryOf(e)!.thread?.count ?? 0) > 0);
    const bundle = (id: string) => {
      let b = out.get(id);
      if (!b) out.set(id, b = {});
      return b;
    };

    // Round 1: edits, references and the latest reply of each thread the reader saw whole.
    const membership = reader.membership;
    const joinedAt = membershipValue(membership) === "join" && membership !== null
      ? membership.position
      : undefined;
    const seenWhole = threads.filter((e) =>
      joinedAt !== undefined && joinedAt < summaryOf(e)!.thread!.firstPosition
    );
    const [edits, references, replies, latest] = await Promise.all([
      this.#load(
        reader,
        edited,
        "m.replace",
        MAX_EDITS,
        (parent, e) =>
          e.pdu.sender === parent.pdu.sender && e.pdu.type === parent.pdu.type &&
          e.pdu.state_key === undefined &&
          (parent.pdu.type === "m.room.encrypted" || isJsonObject(e.pdu.content["m.new_content"])),
      ),
      this.#load(reader, referenced, "m.reference", MAX_REFERENCES),
      threads.length === 0 ? new Map<string, number>() : relations.threadReplies(
        reader.roomId,
        threads.flatMap((root) =>
          [reader.userId, ...reader.ignored].map((userId) => ({ rootId: root.eventId, userId }))
        ),
      ),
      this.deps.store.getEvents(seenWhole.map((e) => summaryOf(e)!.thread!.latest)),
    ]);
    const latestEvents = seenWhole.flatMap((root) => {
      const e = latest.get(summaryOf(root)!.thread!.latest);
      return e && e.roomId === reader.roomId && e.status === "accepted" &&
          !reader.ignored.has(e.pdu.sender)
        ? [e]
        : [];
    });
    const [plain, latestOut] = await Promise.all([
      pipe([...edits.flatMap((l) => l.events), ...references.flatMap((l) => l.events)], "none"),
      pipe(latestEvents, "edits"),
    ]);
    const shown = (e: StoredEvent, formatted: Map<string, JsonObject>) => {
      const f = formatted.get(e.eventId);
      // A redacted child lost its `m.relates_to`: it relates to nothing any more.
      return f && !isRedacted(f) ? f : undefined;
    };
    for (const { parent, events } of edits) {
      let best: StoredEvent | undefined;
      for (const e of events) {
        if (shown(e, plain) && (!best || newer(e, best))) best = e;
      }
      if (best) bundle(parent.eventId)["m.replace"] = plain.get(best.eventId)!;
    }
    for (const { parent, events } of references) {
      const chunk = events.filter((e) => shown(e, plain)).reverse()
        .map((e) => ({ event_id: e.eventId }));
      if (chunk.length > 0) bundle(parent.eventId)["m.reference"] = { chunk };
    }
    const participated = (root: StoredEvent) =>
      root.pdu.sender === reader.userId ||
      (replies.get(threadReplyKey(root.eventId, reader.userId)) ?? 0) > 0;
    const resolved = new Set<string>();
    for (const root of seenWhole) {
      const thread = summaryOf(root)!.thread!;
      const e = latest.get(thread.latest);
      const formatted = e && latestEvents.includes(e) ? shown(e, latestOut) : undefined;
      if (!formatted) continue;
      let ignoredReplies = 0;
      for (const userId of reader.ignored) {
        ignoredReplies += replies.get(threadReplyKey(root.eventId, userId)) ?? 0;
      }
      bundle(root.eventId)["m.thread"] = {
        latest_event: formatted,
        count: Math.max(1, thread.count - ignoredReplies),
        current_user_participated: participated(root),
      };
      resolved.add(root.eventId);
    }

    // Round 2: threads the reader did not see whole, or whose latest reply they may not see:
    // their newest replies, each through the pipeline, counted.
    const unresolved = threads.filter((e) => !resolved.has(e.eventId));
    if (unresolved.length > 0) {
      const loaded = await this.#load(reader, unresolved, "m.thread", MAX_THREAD_REPLIES_CHECKED);
      const formatted = await pipe(loaded.flatMap((l) => l.events), "edits");
      for (const { parent, events } of loaded) {
        const visible = events.filter((e) => shown(e, formatted));
        if (visible.length === 0) continue;
        bundle(parent.eventId)["m.thread"] = {
          latest_event: formatted.get(visible[0].eventId)!,
          count: visible.length,
          current_user_participated: participated(parent),
        };
      }
    }
    return out;
  }

  /**
   * The newest children of one rel_type of each parent (newest first), loaded, accepted, in the
   * room and passing `accept`; one list per parent, one event read for all.
   */
  async #load(
    reader: AggregationReader,
    parents: readonly StoredEvent[],
    relType: string,
    limit: number,
    accept: (parent: StoredEvent, child: StoredEvent) => boolean = () => true,
  ): Promise<Loaded[]> {
    if (parents.length === 0) return [];
    const pages = await Promise.all(
      parents.map((parent) =>
        this.deps.relations.children(reader.roomId, parent.eventId, { relType, dir: "b", limit })
      ),
    );
    const found = await this.deps.store.getEvents(
      pages.flatMap((page) => page.children.map((c) => c.eventId)),
    );
    return parents.map((parent, i) => ({
      parent,
      events: pages[i].children.flatMap((c) => {
        const e = found.get(c.eventId);
        return e && e.roomId === reader.roomId && e.status === "accepted" && accept(parent, e)
          ? [e]
          : [];
      }),
    }));
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
