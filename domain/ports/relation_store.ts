/**
 * The storage port for event relationships: the projections the event log keeps of which
 * events relate to which (written in each event's own commit, rebuilt by replay), threads by
 * latest activity, and events by timestamp. kv/relation_reads.ts implements it.
 */
import type { Direction } from "./event_store.ts";

/** One accepted child event of a parent, as indexed. */
export interface RelationChild {
  eventId: string;
  /** Its position in the room's log (the order relations are paginated in). */
  position: number;
  relType: string;
  /** The child's event type (`m.room.encrypted` in encrypted rooms). */
  type: string;
  sender: string;
}

/** A thread as the projection sums it up. */
export interface ThreadSummary {
  /** Replies (`m.thread` children) not named by an accepted redaction when they arrived later. */
  count: number;
  /** The reply at the highest log position, and that position. */
  latest: string;
  latestPosition: number;
  /** The lowest log position of any reply. */
  firstPosition: number;
}

/** What bundled aggregations of one parent start from. */
export interface RelationSummary {
  thread?: ThreadSummary;
  /** `m.replace` children counted (validity is decided on read). */
  replace?: number;
  /** `m.reference` children counted. */
  reference?: number;
}

/** A page of a parent's children. */
export interface ChildrenPage {
  children: RelationChild[];
  /** Token to continue from; absent when the walk reached the end. */
  next?: string;
}

/** A thread root in the room's threads by activity. */
export interface ThreadActivity {
  rootId: string;
  /** Log position of the thread's latest reply. */
  position: number;
}

/** An event found by timestamp. */
export interface TimestampedEvent {
  eventId: string;
  ts: number;
  position: number;
}

/** Reads of the relation projections. */
export interface RelationReader {
  /**
   * Children of `parentId` (of one `relType` when given), walking `dir` from the timeline token
   * `from` (default: the live end for "b", the start for "f") and stopping at `to`, as
   * /messages tokens do: "b" returns positions below `from`, "f" positions from it up.
   */
  children(
    roomId: string,
    parentId: string,
    options: { relType?: string; from?: string; to?: string; dir: Direction; limit: number },
  ): Promise<ChildrenPage>;
  /** The relation summaries of `parentIds`; parents without one are absent. */
  summaries(roomId: string, parentIds: readonly string[]): Promise<Map<string, RelationSummary>>;
  /** How many replies each (root, user) pair sent in the thread; keyed `rootId + "\n" + userId`. */
  threadReplies(
    roomId: string,
    pairs: readonly { rootId: string; userId: string }[],
  ): Promise<Map<string, number>>;
  /** Threads by latest activity, newest first, below the position boundary `before`. */
  threadsByActivity(
    roomId: string,
    options: { before?: number; limit: number },
  ): Promise<ThreadActivity[]>;
  /**
   * Accepted events by timestamp from `ts`: "f" gives those at or after it, earliest first; "b"
   * those at or before it, latest first.
   */
  eventsByTimestamp(
    roomId: string,
    ts: number,
    dir: Direction,
    limit: number,
  ): Promise<TimestampedEvent[]>;
  /** The position boundary inside a pagination token (timeline or sync token). */
  positionOfToken(roomId: string, token: string): Promise<number>;
}

/** The key `threadReplies` answers under. */
export function threadReplyKey(rootId: string, userId: string): string {
  return `${rootId}\n${userId}`;
}
