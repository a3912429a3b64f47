/**
 * The shapes of the event store's KV values. Field names are snake_case like the stored JSON
 * elsewhere; every record is written once per commit and read back with these types.
 */
import type { EventStatus } from "../domain/ports/event_store.ts";

/**
 * A state group's ID: numbers are allocated from the room head's counter; strings name the
 * layers of a staged state (`<stagedId>.<n>`), written before the room may have a head.
 */
export type GroupId = number | string;

/** Positions of forward events start here; backfilled ones count down from one below. */
export const FIRST_FORWARD_POSITION = 1;

/** The per-room record every append checks and rewrites. */
export interface RoomHead {
  room_version: string;
  /** Lowest position in use; FIRST_FORWARD_POSITION while nothing was backfilled. */
  first: number;
  /** Highest position in use; FIRST_FORWARD_POSITION - 1 before the first forward event. */
  last: number;
  /** Events appended so far: the next event's arrival sequence number. */
  seq: number;
  /** Accepted forward events no accepted forward event cites yet. */
  extremities: string[];
  /** State group of the current state; null for the empty state. */
  state_group: GroupId | null;
  /** Next free state group ID in this room. */
  next_group: number;
  /**
   * The room's open backward extremities (roomid_backwardextremity), sorted, so an append knows
   * without a read whether it fills one; null when more than kv/backward_extremities.ts's bound
   * may be open; absent in heads written before it was kept (the next append reads it back).
   */
  backward_extremities?: string[] | null;
}

/** One event in a room's log. */
export interface LogEntry {
  event_id: string;
  status: EventStatus;
  /** Arrival order within the room; replay re-appends in this order. */
  seq: number;
  /** First chunk of the PDU's UTF-8 JSON. */
  pdu: Uint8Array;
  /** Total number of PDU chunks, counting the one above. */
  chunks: number;
  /** The staged state the event was appended with (`NewEvent.stateBefore`), when it was. */
  state_before?: string;
}

/** An event held outside the timeline (`eventid_outlier`). */
export interface OutlierRecord {
  room_id: string;
  status: EventStatus;
  /** First chunk of the PDU's UTF-8 JSON. */
  pdu: Uint8Array;
  /** Total number of PDU chunks, counting the one above. */
  chunks: number;
}

/** A staged state (`roomid_stagedstate`), written after all its layers. */
export interface StagedStateRecord {
  room_version: string;
  /** The top layer's group ID; null for the empty state. */
  top: GroupId | null;
  entries: number;
  layers: number;
}

/** Event ID index entry. */
export interface EventPositionRecord {
  room_id: string;
  position: number;
}

/** State groups around one event; null is the empty state. */
export interface EventStateGroups {
  before: GroupId | null;
  after: GroupId | null;
}

/** A membership projection entry (both directions hold the same value). */
export interface MembershipRecord {
  membership: string;
  event_id: string;
}

/** A change of one user's membership in a room's current state; null: no membership. */
export interface MemberChangeRecord {
  membership: string | null;
  prev: string | null;
}

/** The position of a room's last member change. */
export interface MemberChangeHead {
  position: number;
}

/** A state group: a delta applied on top of its parent group's state. */
export interface StateGroupRecord {
  parent: GroupId | null;
  /** Ancestors from the root to the parent, so a whole chain is read with getMany. */
  chain: GroupId[];
  /** Entries in the delta (a removal counts as one). */
  entries: number;
  /** Size of the encoded delta in bytes. */
  bytes: number;
  /** First chunk of the encoded delta. */
  delta: Uint8Array;
  /** Total number of delta chunks, counting the one above. */
  chunks: number;
}

/** The head of a room that has no events yet. */
export function emptyRoomHead(roomVersion: string): RoomHead {
  return {
    room_version: roomVersion,
    first: FIRST_FORWARD_POSITION,
    last: FIRST_FORWARD_POSITION - 1,
    seq: 0,
    extremities: [],
    state_group: null,
    next_group: 0,
    backward_extremities: [],
  };
}
