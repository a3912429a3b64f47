/**
 * The top-level sync Filter (`POST /user/{userId}/filter`, `/sync?filter=`): its shape, and the
 * parts sync reads directly. Matching one event against an EventFilter or RoomEventFilter is
 * shared with /messages and /context (domain/event_filter.ts).
 */

/** The spec's EventFilter: used for presence and account data. */
export interface EventFilter {
  limit?: number;
  types?: string[];
  not_types?: string[];
  senders?: string[];
  not_senders?: string[];
}

/** The spec's RoomEventFilter: timeline, state and ephemeral filters add room and member options. */
export interface RoomEventFilter extends EventFilter {
  rooms?: string[];
  not_rooms?: string[];
  contains_url?: boolean;
  lazy_load_members?: boolean;
  include_redundant_members?: boolean;
  unread_thread_notifications?: boolean;
}

/** The room section of a sync filter. */
export interface RoomFilter {
  rooms?: string[];
  not_rooms?: string[];
  include_leave?: boolean;
  timeline?: RoomEventFilter;
  state?: RoomEventFilter;
  ephemeral?: RoomEventFilter;
  account_data?: RoomEventFilter;
}

/** A whole sync filter as stored and as given inline. */
export interface SyncFilter {
  event_fields?: string[];
  event_format?: "client" | "federation";
  presence?: EventFilter;
  account_data?: EventFilter;
  room?: RoomFilter;
}
