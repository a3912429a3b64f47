/**
 * Every Deno KV key the server writes is built here, so the layout can be read in one place.
 * Maps are named by what they map (`eventid_position`: event ID -> log position), Conduit-style.
 * The event store's maps take an optional namespace prefix so replay can rebuild them beside
 * the live ones in the same database.
 */

/** The server's signing key seed (one per server). */
export function serverSigningSeedKey(): Deno.KvKey {
  return ["server_signingseed"];
}

/** Names of the event store's maps; the log maps hold facts, the rest are projections. */
export const EVENT_STORE_MAPS = {
  /** roomId -> RoomHead: last/first position, extremities, current state group, version. */
  roomid_head: "roomid_head",
  /** (roomId, position) -> LogEntry: event ID, status, arrival seq, first PDU chunk. */
  roomid_log: "roomid_log",
  /** (eventId, chunk index >= 1) -> bytes: the rest of a PDU too big for its log entry. */
  eventid_pduchunk: "eventid_pduchunk",
  /** eventId -> {room_id, position}: where the event sits in its room's log. */
  eventid_position: "eventid_position",
  /** eventId -> {before, after}: the state groups holding the state around the event. */
  eventid_stategroups: "eventid_stategroups",
  /** (roomId, type, state_key) -> eventId: the room's current state. */
  roomid_state: "roomid_state",
  /** (roomId, userId) -> {membership, event_id}: members of a room. */
  roomuserid_membership: "roomuserid_membership",
  /** (userId, roomId) -> {membership, event_id}: rooms of a user. */
  userroomid_membership: "userroomid_membership",
  /** (roomId, groupId) -> StateGroupRecord: a state delta against a parent group. */
  roomid_stategroup: "roomid_stategroup",
  /** (roomId, groupId, chunk index >= 1) -> bytes: the rest of a large delta. */
  roomid_stategroupchunk: "roomid_stategroupchunk",
  /** userId -> last sync time: the sync read's blind barrier write. */
  userid_syncbarrier: "userid_syncbarrier",
  /** (roomId, eventId) -> redaction event IDs: accepted redactions naming the event, in arrival order. */
  roomeventid_redactions: "roomeventid_redactions",
} as const;

/** One of the event store's map names. */
export type EventStoreMap = keyof typeof EVENT_STORE_MAPS;

/** Maps that replay rebuilds and compares: the log (rewritten by replay) and every projection. */
export const REPLAYED_MAPS: readonly EventStoreMap[] = [
  "roomid_head",
  "roomid_log",
  "eventid_pduchunk",
  "eventid_position",
  "eventid_stategroups",
  "roomid_state",
  "roomuserid_membership",
  "userroomid_membership",
  "roomid_stategroup",
  "roomid_stategroupchunk",
  "roomeventid_redactions",
];

/** Key builders for the event store, all under one namespace prefix (empty for live data). */
export class EventStoreKeys {
  /** `namespace` is prepended to every key; replay uses it to build projections aside. */
  constructor(readonly namespace: Deno.KvKey = []) {}

  /** The prefix holding every entry of one map. */
  map(name: EventStoreMap): Deno.KvKey {
    return [...this.namespace, EVENT_STORE_MAPS[name]];
  }

  /** A room's head record. */
  head(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomid_head", roomId];
  }

  /** One log entry of a room. */
  log(roomId: string, position: number): Deno.KvKey {
    return [...this.namespace, "roomid_log", roomId, position];
  }

  /** All log entries of a room, in position order. */
  logPrefix(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomid_log", roomId];
  }

  /** A continuation chunk (index >= 1) of an event's PDU. */
  pduChunk(eventId: string, index: number): Deno.KvKey {
    return [...this.namespace, "eventid_pduchunk", eventId, index];
  }

  /** All continuation chunks of an event's PDU. */
  pduChunkPrefix(eventId: string): Deno.KvKey {
    return [...this.namespace, "eventid_pduchunk", eventId];
  }

  /** Event ID -> log position index. */
  eventPosition(eventId: string): Deno.KvKey {
    return [...this.namespace, "eventid_position", eventId];
  }

  /** Event ID -> state groups before and after it. */
  eventStateGroups(eventId: string): Deno.KvKey {
    return [...this.namespace, "eventid_stategroups", eventId];
  }

  /** One current state entry of a room. */
  currentState(roomId: string, type: string, stateKey: string): Deno.KvKey {
    return [...this.namespace, "roomid_state", roomId, type, stateKey];
  }

  /** A room's whole current state, or one event type's entries when `type` is given. */
  currentStatePrefix(roomId: string, type?: string): Deno.KvKey {
    const prefix = [...this.namespace, "roomid_state", roomId];
    return type === undefined ? prefix : [...prefix, type];
  }

  /** A user's membership as seen from the room. */
  roomMember(roomId: string, userId: string): Deno.KvKey {
    return [...this.namespace, "roomuserid_membership", roomId, userId];
  }

  /** All members of a room. */
  roomMemberPrefix(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomuserid_membership", roomId];
  }

  /** A user's membership as seen from the user. */
  userRoom(userId: string, roomId: string): Deno.KvKey {
    return [...this.namespace, "userroomid_membership", userId, roomId];
  }

  /** All rooms a user has a membership in. */
  userRoomPrefix(userId: string): Deno.KvKey {
    return [...this.namespace, "userroomid_membership", userId];
  }

  /** A state group record (delta plus its first chunk). */
  stateGroup(roomId: string, groupId: number): Deno.KvKey {
    return [...this.namespace, "roomid_stategroup", roomId, groupId];
  }

  /** A continuation chunk (index >= 1) of a state group's delta. */
  stateGroupChunk(roomId: string, groupId: number, index: number): Deno.KvKey {
    return [...this.namespace, "roomid_stategroupchunk", roomId, groupId, index];
  }

  /** All continuation chunks of a state group's delta. */
  stateGroupChunkPrefix(roomId: string, groupId: number): Deno.KvKey {
    return [...this.namespace, "roomid_stategroupchunk", roomId, groupId];
  }

  /** The key a sync read blindly writes to take its barrier versionstamp. */
  syncBarrier(userId: string): Deno.KvKey {
    return [...this.namespace, "userid_syncbarrier", userId];
  }

  /** The accepted redactions of a room naming `eventId` (whether they apply is decided on read). */
  redactions(roomId: string, eventId: string): Deno.KvKey {
    return [...this.namespace, "roomeventid_redactions", roomId, eventId];
  }
}

/** (userId, deviceId, txnId) -> {room_id, event_id}: client transaction IDs of sent events. */
export function transactionKey(userId: string, deviceId: string, txnId: string): Deno.KvKey {
  return ["userdevicetxnid_event", userId, deviceId, txnId];
}

/** (eventId, deviceId) -> txnId: which device sent an event under which transaction ID. */
export function eventTransactionKey(eventId: string, deviceId: string): Deno.KvKey {
  return ["eventiddeviceid_txnid", eventId, deviceId];
}
