/**
 * One room's entry in a sliding-sync answer (MSC4186): its timeline, the `required_state` its
 * config asks for, name, avatar, heroes and counts. An initial entry (the room not sent before
 * on the connection, or sent with another config) carries everything; an incremental one only
 * what changed after the position the room was last sent at. Events leave through the read
 * pipeline, as /sync's do (its timeline walk and summary are reused).
 */
import type { JsonObject } from "../protocol/json.ts";
import type { EventStore, StoredEvent } from "../ports/event_store.ts";
import type { IgnoredUsers, ReadPipeline } from "../room_events/read_pipeline.ts";
import type { NotificationCounts } from "../sync/room_stream.ts";
import type { UnreadCounts } from "../sync/sync_response.ts";
import type { RoomConfig } from "./room_config.ts";

export type { RoomConfig } from "./room_config.ts";

/** A hero: a member a client names an unnamed room after. */
export interface SlidingHero {
  user_id: string;
  displayname?: string;
  avatar_url?: string;
}

/** The per-room JSON of an MSC4186 answer; absent fields did not change (incremental). */
export interface SlidingRoomResponse {
  /** The room's `m.room.name`, when set (initial) or changed (incremental). */
  name?: string;
  /** The room's `m.room.avatar` URL, when set or changed. */
  avatar?: string;
  /** Other members to name an unnamed room after (like /sync's `m.heroes`). */
  heroes?: SlidingHero[];
  /** True when this entry replaces whatever the client held for the room. */
  initial?: boolean;
  is_dm?: boolean;
  /** Stripped state of an invite. */
  invite_state?: JsonObject[];
  /** Stripped state of a knock. */
  knock_state?: JsonObject[];
  /** State events the config asks for: all on an initial entry, changed ones after. */
  required_state?: JsonObject[];
  /** Timeline events, oldest first. */
  timeline?: JsonObject[];
  /** A /messages `from` token before the first timeline event. */
  prev_batch?: string;
  /** More events precede the timeline than it holds. */
  limited?: boolean;
  /** How many of the timeline's events are new since the connection's previous position. */
  num_live?: number;
  bump_stamp?: number;
  joined_count?: number;
  invited_count?: number;
  notification_count?: number;
  highlight_count?: number;
  unread_thread_notifications?: Record<string, UnreadCounts>;
}

/** What `buildRoom` needs for one room. */
export interface BuildRoomParams {
  userId: string;
  deviceId?: string;
  roomId: string;
  /** The merged config of the lists and subscriptions that include the room. */
  config: RoomConfig;
  /**
   * The position this room was last sent at on the connection, with this same config; absent:
   * an initial entry (first time, or the config changed).
   */
  since?: string;
  /** The connection's previous position (`num_live` counts events after it); absent: new. */
  previousPos?: string;
  /** The answer's position (a sync token): nothing newer is shown. */
  upTo: string;
  /** From the room list (the stream position of the last bump event). */
  bumpStamp?: number;
  isDm?: boolean;
  /**
   * The user's member event as of `upTo`, when the caller has it (the room list read it);
   * absent, it is read here.
   */
  membership?: StoredEvent;
  /** The room version of a room known only from a remote invite or knock. */
  remoteRoomVersion?: string;
  /** The reader's ignore list when already read for the request (read once for all rooms). */
  ignored?: IgnoredUsers;
  /** Unread counts when the caller read them for every room at once; absent, read here. */
  counts?: UnreadCounts & { threads?: Record<string, UnreadCounts> };
}

/** What room data is read from: the event store, the read pipeline, /sync's unread counts. */
export interface RoomDataDeps {
  store: EventStore;
  /** Every event shown goes through it (visibility, redaction, ignored users, format). */
  pipeline: ReadPipeline;
  /** Unread notification counts (/sync's); absent, counts are zero. */
  notificationCounts?: NotificationCounts;
}

/**
 * Builds rooms' entries: `new RoomDataBuilder(deps).buildRoom(params)` answers one room's
 * entry, or undefined when an incremental entry has nothing new (the room is left out).
 */
export interface RoomDataBuilderApi {
  buildRoom(params: BuildRoomParams): Promise<SlidingRoomResponse | undefined>;
}
