/**
 * Joins of remote rooms under way. A join of a large room takes many commits (outliers, staged
 * state, then the join event), so a record is written before the first of them and removed
 * after the last: a process that dies mid-way leaves the record, and the next start (or the
 * user's next attempt) finishes the join from it.
 */
import type { Pdu } from "../protocol/events.ts";
import type { StagedState } from "./event_store.ts";

/** One join under way. */
export interface PendingJoinRecord {
  roomId: string;
  userId: string;
  roomVersion: string;
  /** The signed join event as sent with send_join (a resumed join re-sends the same event). */
  joinEventId: string;
  joinPdu: Pdu;
  /** The server that answered make_join, then the others worth trying. */
  servers: string[];
  /** Set once the state before the join is staged: only the join's append is left. */
  staged?: StagedState;
  /** When the join started (ms since the epoch). */
  startedAt: number;
}

/** Storage of pending joins. */
export interface PendingJoinStore {
  /** Write (or overwrite) the record of `record.userId`'s join of `record.roomId`. */
  put(record: PendingJoinRecord): Promise<void>;
  /** The record of one user's join of one room; null when none is under way. */
  get(userId: string, roomId: string): Promise<PendingJoinRecord | null>;
  /** Remove the record once the join event is stored (or the join failed for good). */
  delete(userId: string, roomId: string): Promise<void>;
  /** Every pending join, for start-up. */
  list(): Promise<PendingJoinRecord[]>;
}
