/**
 * The storage port for room events: an append-only per-room log with its projections (current
 * state, membership, state at each event, forward extremities) and the reads built on them.
 * The domain depends on these interfaces; kv/ implements them.
 */
import { MatrixError } from "../errors.ts";
import type { Pdu, RoomEvent, StateKey, StateMap } from "../protocol/events.ts";
import type { RoomVersion } from "../protocol/room_versions.ts";

/**
 * What the auth checks decided about an event. Rejected and soft-failed events are stored and
 * marked, but only accepted ones move current state and forward extremities.
 */
export type EventStatus = "accepted" | "rejected" | "soft_failed";

/**
 * One event to append, its ID already computed (or carried, in v1/v2). Only v1/v2 IDs are
 * checked for collisions with other rooms: later versions' IDs hash the room in.
 */
export interface NewEvent {
  eventId: string;
  pdu: Pdu;
  /** The status the caller decided; with `checkState` it holds only if both checks pass. */
  status: EventStatus;
  /**
   * A remote event: inside planning (serialised with local sends by the per-room queue) the
   * store authorises it against the state before it (failing: `rejected`), then against the
   * room's current state as this commit plans it (failing: `soft_failed`, which is neither a
   * forward extremity nor in timelines). Only an event passing both keeps `status`.
   */
  checkState?: boolean;
  /**
   * The state before this event when its prev events are not held (a gap, or the first event
   * of a room we join), staged first with `EventStore.stageState`. Without it an event citing
   * unknown prev events fails its append with MissingPrevEvents.
   */
  stateBefore?: StagedState;
}

/**
 * A state snapshot staged for a room by `EventStore.stageState`: an opaque, content-addressed
 * handle (the same room, version and state always give the same `id`), valid across processes
 * and restarts.
 */
export interface StagedState {
  roomId: string;
  /** Content address of the state (a hash of its entries). */
  id: string;
  /** Entries in the state. */
  entries: number;
}

/**
 * An event cites prev events the store does not hold (as log events) and brings no
 * `stateBefore`; nothing was written. Local events never hit this: their prev events are the
 * room's forward extremities.
 */
export class MissingPrevEvents extends Error {
  constructor(readonly roomId: string, readonly eventId: string, readonly missing: string[]) {
    super(`Event ${eventId} in ${roomId} cites prev events not held: ${missing.join(", ")}`);
    this.name = "MissingPrevEvents";
  }
}

/** An event held by the store: in a room's log (`outlier: false`) or as an outlier. */
export interface FoundEvent {
  eventId: string;
  roomId: string;
  pdu: Pdu;
  status: EventStatus;
  /** Held outside the timeline (auth chain, state of a join): never in /messages or /sync. */
  outlier: boolean;
}

/**
 * An opaque write another storage adapter (outbox, transaction IDs, ...) asks to ride in an
 * append's commit. Keys come from that adapter's kv schema; the domain only passes them on.
 */
export type CommitMutation =
  | { op: "set"; key: readonly (string | number | bigint | boolean | Uint8Array)[]; value: unknown }
  | { op: "delete"; key: readonly (string | number | bigint | boolean | Uint8Array)[] }
  | {
    op: "check";
    key: readonly (string | number | bigint | boolean | Uint8Array)[];
    versionstamp: string | null;
  };

/** Events for one room, appended in order in one atomic commit with their projections. */
export interface AppendRequest {
  roomId: string;
  events: NewEvent[];
  /**
   * History fetched by backfill: takes positions below the room's first, never moves state.
   * A backfilled event whose prev events are not held needs `stateBefore` like any other.
   */
  backfill?: boolean;
  /** The room version, needed only when the room has no events yet and no create event leads. */
  roomVersion?: string;
  /**
   * Extra writes for the same commit, built from where the events landed; may be called more
   * than once (planning, retries). A failing check here fails only this request (409).
   */
  extraMutations?: (appended: AppendedEvent[]) => CommitMutation[];
  /**
   * The head versionstamp these events were built and authorised on. When the room's head is
   * no longer there (another process or isolate appended), nothing is written and the append
   * rejects with RoomHeadMoved, so the caller rebuilds and re-authorises on the new head instead
   * of landing on a state it never checked. Such a request is always first in its commit.
   */
  expectedHead?: string;
}

/** An append with `expectedHead` found the room's head moved on; nothing was written. */
export class RoomHeadMoved extends Error {
  constructor(readonly roomId: string) {
    super(`The head of ${roomId} moved on since the events were built`);
    this.name = "RoomHeadMoved";
  }
}

/**
 * An append whose events and writes need more than one commit within KV's limits (mutations,
 * bytes, key bytes); nothing was written. A request of several events fits when split: the
 * caller may append its parts one after another (413 M_TOO_LARGE otherwise).
 */
export class AppendTooLarge extends MatrixError {
  constructor(readonly roomId: string, readonly events: number, reason: string) {
    super("M_TOO_LARGE", 413, `Appending these events needs a commit over KV's limits (${reason})`);
  }
}

/** Where one event landed (or already was, when `duplicate`). */
export interface AppendedEvent {
  eventId: string;
  roomId: string;
  position: number;
  status: EventStatus;
  duplicate: boolean;
}

/** The outcome of one append request. */
export interface AppendResult {
  events: AppendedEvent[];
  /** The commit's versionstamp. */
  versionstamp: string;
}

/**
 * The position EventReader gives an outlier: below every log position, so it is never inside
 * a timeline window (outliers have no place in a room's log).
 */
export const OUTLIER_POSITION = Number.MIN_SAFE_INTEGER;

/** An event as stored: PDU, status and place in the room's log. */
export interface StoredEvent {
  eventId: string;
  roomId: string;
  pdu: Pdu;
  status: EventStatus;
  position: number;
  /** Versionstamp of the commit that appended it. */
  versionstamp: string;
}

/** What the store hands to state resolution; `resolveState` in domain/state_res accepts it. */
export interface StateResolverInput {
  version: RoomVersion;
  stateMaps: StateMap[];
  getEvent(id: string): Promise<RoomEvent | undefined>;
  isRejected?(id: string): boolean;
}

/** State resolution, injected so storage does not depend on the algorithm. */
export type StateResolver = (input: StateResolverInput) => Promise<StateMap>;

/** What the store hands to the auth check of an event appended with `checkState`. */
export interface StateAuthInput {
  version: RoomVersion;
  event: RoomEvent;
  /** The state to check against (type/state_key -> event ID): before the event, or current. */
  state: StateMap;
  /** Events of the room, from the batch being planned, the log or the outliers. */
  getEvent(id: string): Promise<RoomEvent | undefined>;
}

/** The auth rules against a state, injected like the resolver so tests can swap them. */
export type StateAuthorizer = (
  input: StateAuthInput,
) => Promise<{ allowed: true } | { allowed: false; reason: string }>;

/** A summary of a room's log. */
export interface RoomHeadView {
  roomId: string;
  roomVersion: string;
  /** Lowest position in use (backfill lowers it). */
  firstPosition: number;
  /** Highest position in use; 0 before the first forward event. */
  lastPosition: number;
  forwardExtremities: string[];
  /**
   * An opaque ID of the current state: equal IDs mean equal state (IDs name immutable states and
   * are never reused), so caches of state-derived data can outlive appends of non-state events.
   */
  currentStateId: string;
  versionstamp: string;
}

/** A user's membership in a room, from current state. */
export interface Membership {
  userId: string;
  roomId: string;
  membership: string;
  eventId: string;
}

/** Pagination direction, as in the client-server API. */
export type Direction = "b" | "f";

/** One page of a room's timeline (accepted events only), in the order walked. */
export interface TimelinePage {
  events: StoredEvent[];
  /** Token the page started at. */
  start: string;
  /** Token to continue from; absent when the walk reached the end of the log. */
  end?: string;
}

/** New timeline events of one room in a sync window. */
export interface RoomChanges {
  roomId: string;
  /** Accepted events in the window, oldest first (at most `limit`, the newest ones). */
  events: StoredEvent[];
  /** True when the window held more events than returned. */
  limited: boolean;
  /** Timeline token before the first returned event, for paginating backwards. */
  prevBatch: string;
}

/** Result of a sync read. */
export interface SyncChanges {
  /** Opaque token to pass as `since` next time. */
  nextBatch: string;
  rooms: RoomChanges[];
}

/** Appending events. */
export interface EventWriter {
  /**
   * Append events and their projections in one atomic commit; appends to one room are
   * serialised, concurrent ones may share a commit. Events already stored come back `duplicate`.
   */
  append(request: AppendRequest): Promise<AppendResult>;
  /** Be told, in process, after every commit that appended to a room (long-poll wake-up). */
  onRoomAppended(listener: (roomId: string, versionstamp: string) => void): () => void;
}

/** Reading events and state. */
export interface EventReader {
  /**
   * An event by ID, whatever its status; null when unknown. Outliers count (the state of a
   * room joined over federation is made of them), at position OUTLIER_POSITION.
   */
  getEvent(eventId: string): Promise<StoredEvent | null>;
  /** Several events by ID, outliers included as for getEvent; unknown IDs are absent. */
  getEvents(eventIds: readonly string[]): Promise<Map<string, StoredEvent>>;
  /** The room's head; null when the room has no events. */
  roomHead(roomId: string): Promise<RoomHeadView | null>;
  /** The room's current state. */
  currentState(roomId: string): Promise<StateMap>;
  /** One current state entry's event ID; null when unset. */
  currentStateEventId(roomId: string, type: string, stateKey: string): Promise<string | null>;
  /** Several current state entries at once; keys that are unset are absent from the map. */
  currentStateEventIds(roomId: string, keys: readonly StateKey[]): Promise<StateMap>;
  /** The state before or after an event; null when the event is unknown. */
  stateAtEvent(eventId: string, at: "before" | "after"): Promise<StateMap | null>;
  /**
   * The state after a set of events, resolved when they disagree: the state before a new event
   * whose prev_events these are. Unknown IDs are skipped.
   */
  stateAfterEvents(roomId: string, eventIds: readonly string[]): Promise<StateMap>;
  /**
   * Accepted redactions naming each of `eventIds` in `roomId`, oldest first; events with none
   * are absent. Whether one applies is the reader's call, in every room version:
   * `checkRedactionApplies`.
   */
  redactionsOf(roomId: string, eventIds: readonly string[]): Promise<Map<string, string[]>>;
  /** Members of a room, optionally only those with one of `memberships`. */
  members(roomId: string, memberships?: readonly string[]): Promise<Membership[]>;
  /** Rooms a user has a membership in, optionally only with one of `memberships`. */
  roomsOfUser(userId: string, memberships?: readonly string[]): Promise<Membership[]>;
  /**
   * The servers with users joined to the room in its current state, each with how many (this
   * server too when it has members): one entry per server, not per member.
   */
  serversInRoom(roomId: string): Promise<Map<string, number>>;
  /** Whether `serverName` has a user joined to the room in its current state (one key read). */
  isServerInRoom(roomId: string, serverName: string): Promise<boolean>;
  /**
   * The room's backward extremities: events its log cites as prev events but does not hold
   * (another room's count as missing), each with the log position of the event that cites it.
   */
  backwardExtremities(roomId: string): Promise<Map<string, number>>;
  /**
   * A page of the timeline walking `dir` from `from` (default: the live end for "b", the start
   * for "f"), stopping at `to`. Tokens are opaque position tokens; a sync token as `from`
   * stands for the live end.
   */
  timeline(
    roomId: string,
    options: { from?: string; to?: string; dir: Direction; limit: number },
  ): Promise<TimelinePage>;
  /** The timeline token of the boundary just below `position` (for /context's tokens). */
  timelineTokenAt(position: number): string;
}

/** Reading what changed since a sync token. */
export interface SyncReader {
  /**
   * Take a sync barrier: a blind write whose commit orders every earlier commit before it.
   * Returns the opaque token of that commit; reads up to it are complete.
   */
  syncBarrier(userId: string): Promise<string>;
  /** Rooms with timeline events newer than `since` and not newer than `upTo`, and those events. */
  roomChanges(options: {
    roomIds: readonly string[];
    since?: string;
    upTo: string;
    limit: number;
  }): Promise<RoomChanges[]>;
  /** Barrier, then changes in the user's rooms (or `roomIds`) since `since`. */
  syncChanges(options: {
    userId: string;
    since?: string;
    limit: number;
    roomIds?: readonly string[];
  }): Promise<SyncChanges>;
}

/**
 * Events and state from other servers that are not (yet) in a room's timeline.
 *
 * Joining a remote room (or filling a gap) whose state exceeds one commit goes in steps, each
 * idempotent, so a join interrupted by a crash resumes by running the same steps again:
 * 1. `storeOutliers(roomId, authChain + stateEvents)`: as many commits as KV's limits need;
 *    events already held (as outliers or in the log) are skipped.
 * 2. `stageState(roomId, roomVersion, state)`: the state before the join (event IDs of step 1),
 *    written as a chain of state-group layers over several commits, its record last; staging
 *    the same state again finds the finished record (content-addressed) and writes nothing.
 * 3. `append({roomId, roomVersion, events: [{eventId, pdu, status, checkState: true,
 *    stateBefore}]})`: the join event, last. It creates the room's head when the room has
 *    none; current state projections of a very large state may take commits of their own
 *    before the one that writes the head, all checked against the head still being absent.
 *    Appending it again returns it `duplicate`.
 */
export interface RemoteEventStore {
  /**
   * Stage a state snapshot (type/state_key -> event ID; the events are outliers or log events
   * of the room) so an event whose prev events we lack can be appended with it as `stateBefore`.
   * The room may have no head yet. Several commits when large; idempotent and content-addressed.
   */
  stageState(roomId: string, roomVersion: string, state: StateMap): Promise<StagedState>;
  /**
   * Hold events outside the timeline (map `eventid_outlier`), in as many commits as KV's limits
   * need; events already held, as outliers or in a log, are skipped. Appending one later
   * de-outliers it (its outlier record stays; the log copy wins in every read).
   */
  storeOutliers(roomId: string, events: NewEvent[]): Promise<void>;
  /** Events by ID, from the logs and the outliers; unknown IDs are absent from the map. */
  findEvents(eventIds: readonly string[]): Promise<Map<string, FoundEvent>>;
}

/** The whole event store. */
export interface EventStore extends EventWriter, EventReader, SyncReader, RemoteEventStore {}
