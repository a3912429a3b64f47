/**
 * Sliding sync room lists (MSC4186): which of a user's rooms a list holds (filters), in which
 * order (last activity, most recent first) and which slice of it the client asked for (ranges).
 *
 * MSC4186 orders lists by activity, not by `bump_stamp` ("Activity ordering": every event the
 * user can see moves a room up, so a client watching `[0,19]` learns of any change in any room;
 * Synapse's sort_rooms does the same). `bump_stamp` is a field of each room sent: the latest
 * event of a bump type (BUMP_EVENT_TYPES), which clients sort their own room list by. The list
 * needs every room's activity; only the rooms sent need a bump stamp, so only they read one.
 * Pure functions over candidate rooms that a RoomListSource reads (kv/room_list_source.ts), so
 * the service (sliding_sync_service.ts) computes every list of a request from one read.
 */

/** A list's `filters` (MSC4186); an absent field does not filter. */
export interface SlidingRoomFilters {
  /** Only rooms that are (true) or are not (false) in the user's `m.direct` account data. */
  is_dm?: boolean;
  /** Only rooms that have (true) or have not (false) an `m.room.encryption` state event. */
  is_encrypted?: boolean;
  /** Only rooms the user is (true) or is not (false) invited to. */
  is_invite?: boolean;
  /** Only rooms of these create `type`s; `null` stands for rooms without a type. */
  room_types?: (string | null)[];
  /** No rooms of these create `type`s; `null` stands for rooms without a type. */
  not_room_types?: (string | null)[];
  /** Only rooms that are `m.space.child` children of one of these spaces. */
  spaces?: string[];
}

/** The memberships a room can be listed with (see RoomListSource.candidateRooms). */
export type ListedMembership = "join" | "invite" | "knock" | "leave" | "ban";

/** One room the user could see in a list, with what the filters and the sort need. */
export interface CandidateRoom {
  roomId: string;
  membership: ListedMembership;
  /** The membership event's ID (for an invite or knock over federation, its stripped event). */
  membershipEventId: string;
  /**
   * What lists are ordered by, larger is more recent, comparable across rooms: the global
   * stream position of the room's latest event for a joined room; for any other membership,
   * that of the membership event (a room left or invited to is not moved by what happens after
   * the user left or before they joined).
   */
  activity: number;
  /**
   * The room's `bump_stamp`, on the same scale: the latest event of a bump type for a joined
   * room (its join when none is held, as Synapse), the membership event otherwise. Set for
   * rooms not joined by candidateRooms, for joined ones by bumpStamps (computeLists does it for
   * the rooms in a range and the ones it is told of); undefined until then.
   */
  bumpStamp?: number;
  /** Versionstamp of the commit that last wrote the user's membership in the room. */
  membershipStamp: string;
  /** In the user's `m.direct` account data. */
  isDm: boolean;
  /**
   * Has an `m.room.encryption` state event (for an invite: in its stripped state); undefined
   * when the caller did not ask for it (RoomFacts), and then an `is_encrypted` filter drops it.
   */
  isEncrypted?: boolean;
  /**
   * The create event's `content.type`, null without one (or when an invite's stripped state
   * does not say); undefined when not asked for, and then a room type filter drops it.
   */
  roomType?: string | null;
}

/**
 * Which per-room facts to read besides the bump: each costs a read per room, so a list that
 * does not filter on it does not pay for it.
 */
export interface RoomFacts {
  encryption?: boolean;
  roomType?: boolean;
  /**
   * The reader's ignored users: an invite from one of them is not a candidate (the read
   * pipeline's rule: /sync shows no trace of it, so a list neither counts nor places it).
   */
  ignored?: ReadonlySet<string>;
}

/** Reads the candidate rooms of a user; implemented in kv/ (kv/room_list_source.ts). */
export interface RoomListSource {
  /**
   * The rooms the user's lists may show, as of now (read after the caller's sync barrier):
   * joined, invited and knocked rooms, rooms the user was kicked or banned from, and rooms
   * the user left themselves only when that leave was committed after `since` (a sync
   * position, a versionstamp: "newly left", so the client sees its own leave; Synapse's
   * filter_membership_for_sync). Unordered. `facts` defaults to every fact.
   */
  candidateRooms(userId: string, since?: string, facts?: RoomFacts): Promise<CandidateRoom[]>;
  /** The room IDs named by `m.space.child` state events (non-empty `via`) of these spaces. */
  spaceChildren(spaceIds: readonly string[]): Promise<Set<string>>;
  /** Set `bumpStamp` on these rooms (from candidateRooms) where it is not set yet. */
  bumpStamps(rooms: readonly CandidateRoom[]): Promise<void>;
}

/** One list of a request: its ranges (inclusive, [start, end]) and filters. */
export interface SlidingListParams {
  ranges: [number, number][];
  filters?: SlidingRoomFilters;
}

/** A computed list: how many rooms match, and the room IDs of each requested range. */
export interface ComputedList {
  count: number;
  /** One entry per requested range, in request order; a range past the end is empty. */
  ranges: { range: [number, number]; roomIds: string[] }[];
}

/**
 * Event types that set a room's `bump_stamp` (MSC4186; Synapse's
 * `SLIDING_SYNC_DEFAULT_BUMP_EVENT_TYPES`): what a user sees as new activity, not state churn.
 */
export const BUMP_EVENT_TYPES: ReadonlySet<string> = new Set([
  "m.room.create",
  "m.room.message",
  "m.room.encrypted",
  "m.sticker",
  "m.call.invite",
  "m.poll.start",
  "m.beacon_info",
]);

/** Whether the room passes the filters; `spaceChildren` holds the children of `filters.spaces`. */
export function matchesFilters(
  room: CandidateRoom,
  filters: SlidingRoomFilters | undefined,
  spaceChildren?: ReadonlySet<string>,
): boolean {
  if (!filters) return true;
  if (filters.is_dm !== undefined && room.isDm !== filters.is_dm) return false;
  // A fact not read is unknown: the room is left out, as Synapse leaves out rooms whose state
  // it cannot tell.
  if (filters.is_encrypted !== undefined && room.isEncrypted !== filters.is_encrypted) return false;
  if (filters.is_invite !== undefined && (room.membership === "invite") !== filters.is_invite) {
    return false;
  }
  if (filters.room_types !== undefined || filters.not_room_types !== undefined) {
    if (room.roomType === undefined) return false;
    if (filters.room_types !== undefined && !filters.room_types.includes(room.roomType)) {
      return false;
    }
    if (filters.not_room_types?.includes(room.roomType)) return false;
  }
  if (filters.spaces !== undefined && !spaceChildren?.has(room.roomId)) return false;
  return true;
}

/** Most recent activity first; equal stamps by room ID, so the order is stable. */
export function compareByActivity(a: CandidateRoom, b: CandidateRoom): number {
  if (a.activity !== b.activity) return b.activity - a.activity;
  return a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0;
}

/** Filter, sort and slice one list; `rooms` is not changed. */
export function computeList(
  rooms: readonly CandidateRoom[],
  params: SlidingListParams,
  spaceChildren?: ReadonlySet<string>,
): ComputedList {
  const matching = rooms.filter((room) => matchesFilters(room, params.filters, spaceChildren));
  matching.sort(compareByActivity);
  return {
    count: matching.length,
    ranges: params.ranges.map(([start, end]) => ({
      range: [start, end] as [number, number],
      roomIds: matching.slice(start, end + 1).map((room) => room.roomId),
    })),
  };
}

/** Every list of a request computed from one read of the user's rooms. */
export interface ComputedLists {
  /**
   * The user's candidate rooms (for room subscriptions); those in a range and those named in
   * `stamped` carry their `bumpStamp`.
   */
  rooms: CandidateRoom[];
  lists: Record<string, ComputedList>;
}

/**
 * Read the user's candidate rooms once, with only the facts the lists' filters need, compute
 * each list, and read the bump stamps of the rooms in its ranges and of `stamped` (the room
 * subscriptions: rooms that may be sent without being in a range). A `spaces` filter only counts
 * spaces the user is joined to: the children of a space the user cannot read are not theirs to
 * learn, even as a filter over their own rooms.
 */
export async function computeLists(
  source: RoomListSource,
  userId: string,
  lists: Readonly<Record<string, SlidingListParams>>,
  since?: string,
  stamped: readonly string[] = [],
  ignored?: ReadonlySet<string>,
): Promise<ComputedLists> {
  const filters = Object.values(lists).map((params) => params.filters);
  const rooms = await source.candidateRooms(userId, since, {
    encryption: filters.some((f) => f?.is_encrypted !== undefined),
    roomType: filters.some((f) => f?.room_types !== undefined || f?.not_room_types !== undefined),
    ...(ignored && ignored.size > 0 ? { ignored } : {}),
  });
  const joined = new Set(rooms.filter((r) => r.membership === "join").map((r) => r.roomId));
  const entries = Object.entries(lists);
  // Each list's own spaces (lists are few, and a list's spaces are few).
  const children = await Promise.all(entries.map(([, params]) => {
    const spaces = params.filters?.spaces;
    if (spaces === undefined) return undefined;
    const readable = spaces.filter((spaceId) => joined.has(spaceId));
    return readable.length > 0 ? source.spaceChildren(readable) : new Set<string>();
  }));
  const computed: Record<string, ComputedList> = {};
  entries.forEach(([name, params], i) => {
    computed[name] = computeList(rooms, params, children[i]);
  });
  const sent = new Set(stamped);
  for (const list of Object.values(computed)) {
    for (const range of list.ranges) for (const roomId of range.roomIds) sent.add(roomId);
  }
  await source.bumpStamps(rooms.filter((room) => sent.has(room.roomId)));
  return { rooms, lists: computed };
}
