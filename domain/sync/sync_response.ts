/**
 * The `/sync` response as the spec shapes it, and a builder the stream providers fill in. The
 * E2EE sections are always present (empty until their providers exist), since some clients
 * read them without checking.
 */
import type { JsonObject } from "../protocol/json.ts";
import type { ClientEvent } from "../protocol/client_event.ts";

/** A list of events, as most response sections carry them. */
export interface EventList<T = JsonObject> {
  events: T[];
}

/** Unread counts for a room or a thread. */
export interface UnreadCounts {
  notification_count: number;
  highlight_count: number;
}

/** One joined room in a sync response. */
export interface JoinedRoomSync {
  timeline: { events: (ClientEvent | JsonObject)[]; limited: boolean; prev_batch?: string };
  state: EventList<ClientEvent | JsonObject>;
  ephemeral: EventList;
  account_data: EventList;
  summary: {
    "m.heroes"?: string[];
    "m.joined_member_count"?: number;
    "m.invited_member_count"?: number;
  };
  unread_notifications: UnreadCounts;
  unread_thread_notifications?: Record<string, UnreadCounts>;
}

/** One left (or banned) room in a sync response. */
export interface LeftRoomSync {
  timeline: { events: (ClientEvent | JsonObject)[]; limited: boolean; prev_batch?: string };
  state: EventList<ClientEvent | JsonObject>;
  account_data: EventList;
}

/** The whole `/sync` response body. */
export interface SyncResponse {
  next_batch: string;
  rooms: {
    join: Record<string, JoinedRoomSync>;
    invite: Record<string, { invite_state: EventList }>;
    leave: Record<string, LeftRoomSync>;
    knock: Record<string, { knock_state: EventList }>;
  };
  account_data: EventList;
  presence: EventList;
  to_device: EventList;
  device_lists: { changed: string[]; left: string[] };
  device_one_time_keys_count: Record<string, number>;
  device_unused_fallback_key_types: string[];
}

/** An empty response for `nextBatch`; providers add to it. */
export function emptySyncResponse(nextBatch: string): SyncResponse {
  return {
    next_batch: nextBatch,
    rooms: { join: {}, invite: {}, leave: {}, knock: {} },
    account_data: { events: [] },
    presence: { events: [] },
    to_device: { events: [] },
    device_lists: { changed: [], left: [] },
    device_one_time_keys_count: {},
    device_unused_fallback_key_types: [],
  };
}

/** A joined room's entry, created empty when the room has nothing yet in this response. */
export function joinedRoomEntry(response: SyncResponse, roomId: string): JoinedRoomSync {
  let room = response.rooms.join[roomId];
  if (!room) {
    room = {
      timeline: { events: [], limited: false },
      state: { events: [] },
      ephemeral: { events: [] },
      account_data: { events: [] },
      summary: {},
      unread_notifications: { notification_count: 0, highlight_count: 0 },
    };
    response.rooms.join[roomId] = room;
  }
  return room;
}

/**
 * Drop joined rooms with nothing to say from an incremental response: a room whose window
 * held only events the filter or the pipeline left out has no entry, as in Synapse (unread
 * counts alone do not count).
 */
export function dropEmptyJoinedRooms(response: SyncResponse): void {
  for (const [roomId, room] of Object.entries(response.rooms.join)) {
    if (
      room.timeline.events.length === 0 && room.state.events.length === 0 &&
      room.ephemeral.events.length === 0 && room.account_data.events.length === 0
    ) delete response.rooms.join[roomId];
  }
}

/**
 * True when the response carries nothing a client would act on, so a long-poll keeps waiting.
 * Key counts alone never end a wait: they are a snapshot, not a change.
 */
export function isEmptySyncResponse(response: SyncResponse): boolean {
  const { rooms } = response;
  const roomsEmpty = Object.keys(rooms.invite).length === 0 &&
    Object.keys(rooms.leave).length === 0 && Object.keys(rooms.knock).length === 0 &&
    Object.values(rooms.join).every((room) =>
      room.timeline.events.length === 0 && room.state.events.length === 0 &&
      room.ephemeral.events.length === 0 && room.account_data.events.length === 0
    );
  return roomsEmpty && response.account_data.events.length === 0 &&
    response.presence.events.length === 0 && response.to_device.events.length === 0 &&
    response.device_lists.changed.length === 0 && response.device_lists.left.length === 0;
}
