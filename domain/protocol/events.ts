/**
 * Event shapes. A `Pdu` is an event as it travels between servers and is stored in the log;
 * a `RoomEvent` is the normalised view that auth rules and state resolution read (event ID
 * always present, `prev_events`/`auth_events` as plain ID lists in every room version).
 */
import type { JsonObject } from "./json.ts";
import type { RoomVersion } from "./room_versions.ts";

/** A v1/v2 event reference: `[event_id, {sha256: hash}]`. */
export type EventReferenceTuple = [string, { sha256?: string }];

/** An event as on the wire (federation) and in the log. */
export interface Pdu {
  /** Present only in room versions 1 and 2. */
  event_id?: string;
  /** Absent on a v12 create event, whose room ID derives from its own event ID. */
  room_id?: string;
  sender: string;
  type: string;
  state_key?: string;
  content: JsonObject;
  origin_server_ts: number;
  depth: number;
  prev_events: string[] | EventReferenceTuple[];
  auth_events: string[] | EventReferenceTuple[];
  /** Top-level in room versions 1 to 10; in content from v11. */
  redacts?: string;
  hashes: { sha256: string };
  signatures: Record<string, Record<string, string>>;
  unsigned?: JsonObject;
  /** Dropped by v11 redaction; still sent by many servers. */
  origin?: string;
  [extra: string]: unknown;
}

/** The normalised event that pure protocol functions read. */
export interface RoomEvent {
  event_id: string;
  room_id: string;
  sender: string;
  type: string;
  state_key?: string;
  content: JsonObject;
  origin_server_ts: number;
  depth?: number;
  prev_events: string[];
  auth_events: string[];
  /** For redactions: top-level in v1-10, copied from content in v11+. */
  redacts?: string;
  unsigned?: JsonObject;
}

/** A (type, state_key) pair, as used for state maps. */
export type StateKey = `${string}\u0000${string}`;

/** The key of a state map entry; NUL cannot appear in event types or state keys we accept. */
export function stateKey(type: string, key: string): StateKey {
  return `${type}\u0000${key}`;
}

/** Split a state map key back into its type and state_key. */
export function splitStateKey(key: StateKey): [type: string, stateKey: string] {
  const i = key.indexOf("\u0000");
  return [key.slice(0, i), key.slice(i + 1)];
}

/** A state map: (type, state_key) to event ID. */
export type StateMap = Map<StateKey, string>;

/** The event IDs in a prev_events/auth_events list of either format. */
export function referencedIds(refs: string[] | EventReferenceTuple[]): string[] {
  return refs.map((r) => (typeof r === "string" ? r : r[0]));
}

/** The room ID of a v12 create event: `!` followed by its event ID without the sigil. */
export function roomIdFromCreateEventId(eventId: string): string {
  return `!${eventId.slice(1)}`;
}

/** Normalise a PDU whose event ID is known (computed or, for v1/v2, carried) into a RoomEvent. */
export function toRoomEvent(pdu: Pdu, eventId: string, version: RoomVersion): RoomEvent {
  const redacts = version.redactsInContent
    ? (typeof pdu.content.redacts === "string" ? pdu.content.redacts : pdu.redacts)
    : pdu.redacts;
  const roomId = pdu.room_id ??
    (pdu.type === "m.room.create" && version.roomIdIsCreateEventHash
      ? roomIdFromCreateEventId(eventId)
      : "");
  const event: RoomEvent = {
    event_id: eventId,
    room_id: roomId,
    sender: pdu.sender,
    type: pdu.type,
    content: pdu.content,
    origin_server_ts: pdu.origin_server_ts,
    depth: pdu.depth,
    prev_events: referencedIds(pdu.prev_events),
    auth_events: referencedIds(pdu.auth_events),
  };
  if (pdu.state_key !== undefined) event.state_key = pdu.state_key;
  if (redacts !== undefined) event.redacts = redacts;
  if (pdu.unsigned !== undefined) event.unsigned = pdu.unsigned;
  return event;
}

/** True for state events (those with a state_key, even an empty one). */
export function isStateEvent(event: { state_key?: string }): boolean {
  return typeof event.state_key === "string";
}
