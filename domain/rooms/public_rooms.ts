/**
 * The local published room directory: which rooms are listed (`/directory/list/room`) and the
 * `/publicRooms` listing with search and paging. Summaries are read from current state.
 */
import { forbidden, invalidParam } from "../errors.ts";
import type { RoomVisibility } from "../ports/room_directory_store.ts";
import { RoomState } from "./room_state.ts";
import type { RoomServiceDeps } from "./room_services.ts";

/** One entry of the `/publicRooms` chunk. */
export interface PublicRoomSummary {
  room_id: string;
  num_joined_members: number;
  world_readable: boolean;
  guest_can_join: boolean;
  join_rule?: string;
  name?: string;
  topic?: string;
  avatar_url?: string;
  canonical_alias?: string;
  room_type?: string;
}

/** A `/publicRooms` request. */
export interface PublicRoomsQuery {
  limit?: number;
  since?: string;
  searchTerm?: string;
  /** Room types to include; null stands for rooms without a type. Absent: all. */
  roomTypes?: (string | null)[];
}

/** A `/publicRooms` response. */
export interface PublicRoomsPage {
  chunk: PublicRoomSummary[];
  next_batch?: string;
  prev_batch?: string;
  total_room_count_estimate: number;
}

const TOKEN = /^o(\d{1,9})$/;

/** The published room directory of this server. */
export class PublicRoomDirectory {
  constructor(private readonly deps: RoomServiceDeps) {}

  /** A room's directory visibility; M_NOT_FOUND for unknown rooms. */
  async visibility(roomId: string): Promise<RoomVisibility> {
    await RoomState.open(this.deps.store, roomId);
    return await this.deps.directory.visibility(roomId);
  }

  /** Publish or unpublish a room: for joined users who may change its canonical alias. */
  async setVisibility(userId: string, roomId: string, visibility: RoomVisibility): Promise<void> {
    const state = await RoomState.open(this.deps.store, roomId);
    const allowed = (await state.membership(userId)) === "join" &&
      (await state.maySendState(userId, "m.room.canonical_alias"));
    if (!allowed) throw forbidden("You may not change this room's directory visibility");
    await this.deps.directory.commit(this.deps.directory.visibilityMutations(roomId, visibility));
  }

  /** A page of published rooms, largest first; `since` tokens are offsets into the filtered list. */
  async list(query: PublicRoomsQuery): Promise<PublicRoomsPage> {
    let offset = 0;
    if (query.since !== undefined) {
      const match = TOKEN.exec(query.since);
      if (!match) throw invalidParam(`Invalid pagination token ${JSON.stringify(query.since)}`);
      offset = Number(match[1]);
    }
    const summaries = (await Promise.all(
      (await this.deps.directory.publishedRooms()).map((id) => this.summary(id)),
    )).filter((s): s is PublicRoomSummary => s !== null);
    const term = query.searchTerm?.trim().toLowerCase();
    const matching = summaries.filter((s) => {
      if (query.roomTypes && !query.roomTypes.includes(s.room_type ?? null)) return false;
      if (!term) return true;
      return [s.name, s.topic, s.canonical_alias, s.room_id].some((text) =>
        text?.toLowerCase().includes(term)
      );
    });
    matching.sort((a, b) =>
      b.num_joined_members - a.num_joined_members || a.room_id.localeCompare(b.room_id)
    );
    const limit = query.limit ?? matching.length;
    const chunk = matching.slice(offset, offset + limit);
    const page: PublicRoomsPage = { chunk, total_room_count_estimate: matching.length };
    if (offset + chunk.length < matching.length) page.next_batch = `o${offset + chunk.length}`;
    if (offset > 0) page.prev_batch = `o${Math.max(0, offset - limit)}`;
    return page;
  }

  /** What the directory shows of a room; null when the room is gone. */
  async summary(roomId: string): Promise<PublicRoomSummary | null> {
    let state: RoomState;
    try {
      state = await RoomState.open(this.deps.store, roomId);
    } catch {
      return null;
    }
    const types = [
      "m.room.name",
      "m.room.topic",
      "m.room.avatar",
      "m.room.canonical_alias",
      "m.room.join_rules",
      "m.room.history_visibility",
      "m.room.guest_access",
      "m.room.create",
    ];
    await state.load(types.map((t) => [t, ""]));
    const [name, topic, avatar, alias, rules, history, guests, create] = await Promise.all(
      types.map((t) => state.content(t)),
    );
    const members = await this.deps.store.members(roomId, ["join"]);
    const summary: PublicRoomSummary = {
      room_id: roomId,
      num_joined_members: members.length,
      world_readable: history?.history_visibility === "world_readable",
      guest_can_join: guests?.guest_access === "can_join",
    };
    if (typeof rules?.join_rule === "string") summary.join_rule = rules.join_rule;
    if (typeof name?.name === "string" && name.name) summary.name = name.name;
    if (typeof topic?.topic === "string" && topic.topic) summary.topic = topic.topic;
    if (typeof avatar?.url === "string" && avatar.url) summary.avatar_url = avatar.url;
    if (typeof alias?.alias === "string") summary.canonical_alias = alias.alias;
    if (typeof create?.type === "string") summary.room_type = create.type;
    return summary;
  }
}
