/**
 * The storage port for an outbox: work for other servers (push gateways now, federation later)
 * written in the same commit as whatever causes it, one ordered stream per destination, drained
 * by a sender that holds a lease on the destination and backs off when it fails.
 */
import type { CommitMutation } from "./event_store.ts";
import type { JsonObject } from "../protocol/json.ts";

/** One entry to append: its destination, its place in the destination's order, its payload. */
export interface OutboxAppend {
  destination: string;
  /** Orders entries within the destination (and makes rewriting the same entry idempotent). */
  order: readonly (string | number)[];
  payload: JsonObject;
}

/** A stored entry; `ref` names it for `acknowledge`. */
export interface OutboxEntry {
  ref: readonly (string | number)[];
  payload: JsonObject;
}

/** A destination's sending state, kept beside its stream. */
export interface OutboxState {
  /** The sender holding the lease, and until when (ms); 0 when free. */
  holder: string;
  leaseUntil: number;
  /** Failed attempts in a row, and when the next may start (ms). */
  failures: number;
  retryAt: number;
}

/** A lease taken on a destination: the state as written, to be passed back on release. */
export interface OutboxLease {
  destination: string;
  state: OutboxState;
  /** The versionstamp of the lease's commit (a release checks nobody took over since). */
  versionstamp: string;
}

/** One outbox stream kind (such as "push"). */
export interface OutboxStore {
  /**
   * The writes of `entries` for another commit (an event's): entries, pending markers, and the
   * stream's wake key (one write), which wakes the senders of other processes.
   */
  mutations(entries: readonly OutboxAppend[]): CommitMutation[];
  /** Append `entries` in commits of their own. */
  append(entries: readonly OutboxAppend[]): Promise<void>;
  /** Destinations with entries (at most `limit`), from `after` on, with their pending marks. */
  pending(limit: number, after?: string): Promise<{ destination: string; mark: string }[]>;
  /** The first `limit` entries of a destination, in order. */
  peek(destination: string, limit: number): Promise<OutboxEntry[]>;
  /** Remove delivered (or abandoned) entries. */
  acknowledge(destination: string, refs: readonly OutboxEntry["ref"][]): Promise<void>;
  /**
   * Forget that the destination has work, unless an append landed since its pending `mark`
   * was read (then the marker stays and the next pass sends the new entries).
   */
  clearPending(destination: string, mark: string): Promise<void>;
  /**
   * Take the destination's lease for `holder` until `leaseUntil`, unless a lease (anyone's) is
   * still running or its retry time is after `now`; null when not taken.
   */
  lease(
    destination: string,
    holder: string,
    now: number,
    leaseUntil: number,
  ): Promise<OutboxLease | null>;
  /**
   * Clear the destination's backoff (failures and retry time) now, so its next pass may start at
   * once; a running lease stays, and its release then leaves the destination free of backoff.
   * True when there was a backoff to clear (the caller wakes its sender).
   */
  resetRetry(destination: string): Promise<boolean>;
  /**
   * Give the lease back with the new failure count and retry time (a lost lease is a no-op; a
   * lease whose backoff `resetRetry` cleared meanwhile is released free of backoff).
   */
  release(lease: OutboxLease, outcome: { failures: number; retryAt: number }): Promise<void>;
  /** Drop a destination's every entry, marker and state (its pusher is gone). */
  dropDestination(destination: string): Promise<void>;
  /**
   * The earliest time after `now` at which a destination now backed off or leased (by anyone)
   * may be tried again: when its retry comes due or its lease runs out; null when none is.
   */
  nextDue(now: number): Promise<number | null>;
}
