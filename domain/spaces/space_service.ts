/**
 * Spaces and room previews, over the rooms this server holds (children held only by other
 * servers are not asked for): for clients the space hierarchy (`GET /rooms/{roomId}/hierarchy`),
 * room summaries (`GET /room_summary/{roomIdOrAlias}`, MSC3266) and mutual rooms
 * (`GET /mutual_rooms`, MSC2666); for other servers the federation hierarchy
 * (`serverHierarchy`). Learnt from Synapse's handlers/room_summary.py.
 *
 * A room is previewable by a user when the spec's hierarchy rules say so: the user is joined or
 * invited; its join rule is public, knock or knock_restricted (where the room version has
 * them); it is world-readable; or it is restricted and the user is joined to one of its allowed
 * rooms. Anonymous callers of the summary see public, knockable and world-readable rooms only.
 * The state shown is read through the read pipeline's `previewState`, so redactions apply.
 */
import { forbidden, invalidParam, notFound } from "../errors.ts";
import { type StateKey, stateKey, type StateMap } from "../protocol/events.ts";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import type { EventReader, StoredEvent } from "../ports/event_store.ts";
import type { ReadPipeline } from "../room_events/read_pipeline.ts";
import { type RoomVersion, roomVersion } from "../protocol/room_versions.ts";

/** Rooms one hierarchy page returns at most (Synapse's MAX_ROOMS). */
export const MAX_HIERARCHY_LIMIT = 50;
/** Children of one space considered at most (Synapse's MAX_ROOMS_PER_SPACE caps federation). */
export const MAX_CHILDREN_PER_SPACE = 500;
/** Rooms one hierarchy walk may visit, pages before this one included. */
export const MAX_HIERARCHY_ROOMS = 2_000;
/** Deepest level walked when the client sets no `max_depth`. */
export const DEFAULT_MAX_DEPTH = 50;
/** Rooms one mutual-rooms page returns at most. */
export const MUTUAL_ROOMS_PAGE = 100;

/** The summary state of a room: these types with state key "". */
const SUMMARY_TYPES = [
  "m.room.create",
  "m.room.name",
  "m.room.topic",
  "m.room.avatar",
  "m.room.canonical_alias",
  "m.room.join_rules",
  "m.room.history_visibility",
  "m.room.guest_access",
  "m.room.encryption",
];

/** Order may hold only printable ASCII and at most 50 characters (spec, m.space.child). */
const VALID_ORDER = /^[\x20-\x7e]{0,50}$/;

/** A hierarchy request. */
export interface HierarchyQuery {
  suggestedOnly: boolean;
  /** Absent: DEFAULT_MAX_DEPTH. */
  maxDepth?: number;
  limit?: number;
  from?: string;
}

/** A room opened for previewing: its version and summary state, redactions applied. */
interface PreviewRoom {
  roomId: string;
  version: RoomVersion;
  state: StateMap;
  /** Content of each summary type (redacted where a redaction applies). */
  contents: Map<string, JsonObject>;
}

/** Space hierarchies, summaries and mutual rooms. */
export class SpaceService {
  /** Over the event store and the read pipeline (redactions of what is previewed). */
  constructor(private readonly deps: { store: EventReader; pipeline: ReadPipeline }) {}

  /** `GET /rooms/{roomId}/hierarchy`: depth-first over m.space.child, local rooms only. */
  async hierarchy(userId: string, rootId: string, query: HierarchyQuery): Promise<JsonObject> {
    const maxDepth = query.maxDepth ?? DEFAULT_MAX_DEPTH;
    const limit = Math.min(query.limit ?? MAX_HIERARCHY_LIMIT, MAX_HIERARCHY_LIMIT);
    let skip = 0;
    if (query.from !== undefined) {
      const token = decodeHierarchyToken(query.from);
      if (token.root !== rootId) throw invalidParam("Unknown pagination token");
      if (token.suggestedOnly !== query.suggestedOnly || token.maxDepth !== maxDepth) {
        throw invalidParam("suggested_only and max_depth cannot change on paginated requests");
      }
      skip = token.skip;
    }
    const root = await this.#open(rootId);
    if (!root || !(await this.#previewable(root, userId))) {
      throw forbidden("You may not preview this room");
    }

    const rooms: JsonObject[] = [];
    let seen = 0;
    const processed = new Set<string>();
    // The next room to visit is last, as in Synapse's walk.
    const queue: { roomId: string; depth: number; room?: PreviewRoom }[] = [
      { roomId: rootId, depth: 0, room: root },
    ];
    while (queue.length > 0 && rooms.length < limit && processed.size < MAX_HIERARCHY_ROOMS) {
      const { roomId, depth, room: known } = queue.pop()!;
      if (processed.has(roomId)) continue;
      processed.add(roomId);
      const room = known ?? await this.#open(roomId);
      if (!room || !(await this.#previewable(room, userId))) continue;
      const isSpace = room.contents.get("m.room.create")?.type === "m.space";
      const children = isSpace ? await this.#children(room, query.suggestedOnly) : [];
      if (seen++ >= skip) {
        rooms.push({ ...(await this.#summary(room)), children_state: children });
      }
      if (depth < maxDepth) {
        for (const child of [...children].reverse()) {
          queue.push({ roomId: child.state_key as string, depth: depth + 1 });
        }
      }
    }
    const out: JsonObject = { rooms };
    const more = queue.some((entry) => !processed.has(entry.roomId));
    if (more && processed.size < MAX_HIERARCHY_ROOMS) {
      out.next_batch = encodeHierarchyToken({
        root: rootId,
        suggestedOnly: query.suggestedOnly,
        maxDepth,
        skip: seen,
      });
    }
    return out;
  }

  /**
   * The federation hierarchy (`GET /_matrix/federation/v1/hierarchy/{roomId}`) for another
   * server: the room and its children's summaries, unpaginated. The room must be previewable by
   * `server` (M_NOT_FOUND otherwise); children it may not preview are listed in
   * `inaccessible_children`, children this server holds no state for are left out, as the spec
   * says. A server may preview a room whose join rule or history lets anyone, or one where a user
   * of its own is joined or invited, or (restricted) one whose allowed rooms it is joined to.
   */
  async serverHierarchy(server: string, roomId: string, suggestedOnly: boolean) {
    const root = await this.#open(roomId);
    if (!root || !(await this.#previewableByServer(root, server))) {
      throw notFound("Unknown room or not accessible");
    }
    const isSpace = root.contents.get("m.room.create")?.type === "m.space";
    const childrenState = isSpace ? await this.#children(root, suggestedOnly) : [];
    const children: JsonObject[] = [];
    const inaccessible: string[] = [];
    for (const child of childrenState) {
      const childId = child.state_key as string;
      if (childId === roomId) continue;
      const room = await this.#open(childId);
      if (!room) continue;
      if (await this.#previewableByServer(room, server)) children.push(await this.#summary(room));
      else inaccessible.push(childId);
    }
    return {
      room: { ...(await this.#summary(root)), children_state: childrenState },
      children,
      inaccessible_children: inaccessible,
    };
  }

  /**
   * `GET /room_summary/{roomIdOrAlias}` for a room ID (aliases are resolved by the caller);
   * `userId` is null for an anonymous caller. M_NOT_FOUND when unknown or not previewable.
   */
  async summary(userId: string | null, roomId: string): Promise<JsonObject> {
    const room = await this.#open(roomId);
    if (!room || !(await this.#previewable(room, userId))) {
      throw notFound("Room not found or not accessible");
    }
    const summary = await this.#summary(room);
    if (userId !== null) {
      const membership = await this.#membership(room, userId);
      summary.membership = membership ?? "leave";
    }
    return summary;
  }

  /** `GET /mutual_rooms`: rooms both users are joined to, by room ID, a page at a time. */
  async mutualRooms(userId: string, otherId: string, from?: string): Promise<JsonObject> {
    if (otherId === userId) throw invalidParam("user_id is your own user ID");
    if (from !== undefined && !from.startsWith("!")) throw invalidParam("Invalid from token");
    const [mine, theirs] = await Promise.all([
      this.deps.store.roomsOfUser(userId, ["join"]),
      this.deps.store.roomsOfUser(otherId, ["join"]),
    ]);
    const theirIds = new Set(theirs.map((m) => m.roomId));
    const shared = mine.map((m) => m.roomId).filter((id) => theirIds.has(id)).sort();
    const rest = from === undefined ? shared : shared.filter((id) => id > from);
    const page = rest.slice(0, MUTUAL_ROOMS_PAGE);
    const out: JsonObject = { joined: page, count: shared.length };
    if (rest.length > page.length) out.next_batch = page.at(-1)!;
    return out;
  }

  /** A local room's version and summary state; null when this server has no state for it. */
  async #open(roomId: string): Promise<PreviewRoom | null> {
    const head = await this.deps.store.roomHead(roomId);
    const version = head ? roomVersion(head.roomVersion) : undefined;
    if (!head || !version || head.lastPosition === 0) return null;
    const keys: StateKey[] = SUMMARY_TYPES.map((type) => stateKey(type, ""));
    const state = await this.deps.store.currentStateEventIds(roomId, keys);
    const events = await this.deps.store.getEvents([...state.values()]);
    const stored = [...state.values()].flatMap((id) => events.get(id) ?? []);
    const previewed = await this.deps.pipeline.previewState(roomId, version, stored);
    const contents = new Map<string, JsonObject>();
    for (const event of previewed) contents.set(event.type as string, event.content as JsonObject);
    return { roomId, version, state, contents };
  }

  /** The user's membership in the room, from current state. */
  async #membership(room: PreviewRoom, userId: string): Promise<string | undefined> {
    const id = await this.deps.store.currentStateEventId(room.roomId, "m.room.member", userId);
    const event = id ? await this.deps.store.getEvent(id) : null;
    const membership = event?.pdu.content.membership;
    return typeof membership === "string" ? membership : undefined;
  }

  /** Whether the user (or an anonymous caller) may preview the room; see the module comment. */
  async #previewable(room: PreviewRoom, userId: string | null): Promise<boolean> {
    const joinRules = room.contents.get("m.room.join_rules");
    const rule = joinRules?.join_rule;
    const { version } = room;
    if (
      rule === "public" || (version.knockJoinRule && rule === "knock") ||
      (version.knockRestrictedJoinRule && rule === "knock_restricted")
    ) return true;
    if (room.contents.get("m.room.history_visibility")?.history_visibility === "world_readable") {
      return true;
    }
    if (userId === null) return false;
    const membership = await this.#membership(room, userId);
    if (membership === "join" || membership === "invite") return true;
    const restricted = (version.restrictedJoinRule && rule === "restricted") ||
      (version.knockRestrictedJoinRule && rule === "knock_restricted");
    if (!restricted) return false;
    const allowed = allowedRoomIds(joinRules);
    if (allowed.length === 0) return false;
    const joined = await this.deps.store.roomsOfUser(userId, ["join"]);
    return joined.some((m) => allowed.includes(m.roomId));
  }

  /** Whether another server may preview the room; see `serverHierarchy`. */
  async #previewableByServer(room: PreviewRoom, server: string): Promise<boolean> {
    if (await this.#previewable(room, null)) return true;
    // Joined: one read of the room servers projection. Invited: no projection counts invites,
    // so they are listed, only for a server with no member joined.
    if (await this.deps.store.isServerInRoom(room.roomId, server)) return true;
    const ofServer = (userId: string) => userId.slice(userId.indexOf(":") + 1) === server;
    const invited = await this.deps.store.members(room.roomId, ["invite"]);
    if (invited.some((m) => ofServer(m.userId))) return true;
    const joinRules = room.contents.get("m.room.join_rules");
    const rule = joinRules?.join_rule;
    const { version } = room;
    const restricted = (version.restrictedJoinRule && rule === "restricted") ||
      (version.knockRestrictedJoinRule && rule === "knock_restricted");
    if (!restricted) return false;
    for (const allowedId of allowedRoomIds(joinRules)) {
      if (await this.deps.store.isServerInRoom(allowedId, server)) return true;
    }
    return false;
  }

  /** The spec's RoomSummary of a previewable room. */
  async #summary(room: PreviewRoom): Promise<JsonObject> {
    const c = (type: string) => room.contents.get(type);
    const members = await this.deps.store.members(room.roomId, ["join"]);
    const out: JsonObject = {
      room_id: room.roomId,
      num_joined_members: members.length,
      world_readable: c("m.room.history_visibility")?.history_visibility === "world_readable",
      guest_can_join: c("m.room.guest_access")?.guest_access === "can_join",
      room_version: room.version.id,
    };
    const text = (value: unknown) => typeof value === "string" && value !== "";
    if (text(c("m.room.name")?.name)) out.name = c("m.room.name")!.name;
    if (text(c("m.room.topic")?.topic)) out.topic = c("m.room.topic")!.topic;
    if (text(c("m.room.avatar")?.url)) out.avatar_url = c("m.room.avatar")!.url;
    if (text(c("m.room.canonical_alias")?.alias)) {
      out.canonical_alias = c("m.room.canonical_alias")!.alias;
    }
    const rule = c("m.room.join_rules")?.join_rule;
    out.join_rule = typeof rule === "string" ? rule : "invite";
    if (text(c("m.room.create")?.type)) out.room_type = c("m.room.create")!.type;
    const allowed = allowedRoomIds(c("m.room.join_rules"));
    if ((rule === "restricted" || rule === "knock_restricted") && allowed.length > 0) {
      out.allowed_room_ids = allowed;
    }
    if (text(c("m.room.encryption")?.algorithm)) {
      out.encryption = c("m.room.encryption")!.algorithm;
    }
    return out;
  }

  /**
   * A space's valid m.space.child events as stripped state with origin_server_ts (redactions
   * applied: a redacted child has no `via` and drops out), in the spec's order: `order` first
   * (those without one last), then origin_server_ts, then room ID.
   */
  async #children(room: PreviewRoom, suggestedOnly: boolean): Promise<JsonObject[]> {
    const state = await this.deps.store.currentState(room.roomId);
    const ids: string[] = [];
    for (const [key, id] of state) {
      if (key.startsWith("m.space.child\u0000")) ids.push(id);
      if (ids.length === MAX_CHILDREN_PER_SPACE) break;
    }
    const events = await this.deps.store.getEvents(ids);
    const stored: StoredEvent[] = ids.flatMap((id) => events.get(id) ?? []);
    const stripped = await this.deps.pipeline.previewState(room.roomId, room.version, stored);
    return stripped.filter((e) => {
      const content = e.content as JsonObject;
      if (!validVia(content.via)) return false;
      return !suggestedOnly || content.suggested === true;
    }).sort(compareChildren);
  }
}

function validVia(via: unknown): boolean {
  return Array.isArray(via) && via.length > 0 && via.every((v) => typeof v === "string");
}

function orderOf(event: JsonObject): string | undefined {
  const order = (event.content as JsonObject).order;
  return typeof order === "string" && VALID_ORDER.test(order) ? order : undefined;
}

function compareChildren(a: JsonObject, b: JsonObject): number {
  const oa = orderOf(a);
  const ob = orderOf(b);
  if (oa !== ob) {
    if (oa === undefined) return 1;
    if (ob === undefined) return -1;
    return oa < ob ? -1 : 1;
  }
  const ta = a.origin_server_ts as number;
  const tb = b.origin_server_ts as number;
  if (ta !== tb) return ta - tb;
  const ra = a.state_key as string;
  const rb = b.state_key as string;
  return ra < rb ? -1 : ra > rb ? 1 : 0;
}

/** The rooms a restricted join rule allows joining through. */
function allowedRoomIds(joinRules: JsonObject | undefined): string[] {
  const allow = joinRules?.allow;
  if (!Array.isArray(allow)) return [];
  return allow.flatMap((entry) =>
    isJsonObject(entry) && entry.type === "m.room_membership" &&
      typeof entry.room_id === "string"
      ? [entry.room_id]
      : []
  );
}

interface HierarchyToken {
  root: string;
  suggestedOnly: boolean;
  maxDepth: number;
  /** Rooms of the walk already returned. */
  skip: number;
}

/**
 * Tokens hold the request and how many rooms of the walk came before: the next page walks again
 * and skips them (stateless, so any process can serve it; Synapse stores the queue instead).
 */
function encodeHierarchyToken(token: HierarchyToken): string {
  const json = JSON.stringify([token.root, token.suggestedOnly, token.maxDepth, token.skip]);
  return btoa(json).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function decodeHierarchyToken(text: string): HierarchyToken {
  let data: unknown;
  try {
    data = JSON.parse(atob(text.replaceAll("-", "+").replaceAll("_", "/")));
  } catch {
    throw invalidParam("Unknown pagination token");
  }
  if (
    !Array.isArray(data) || data.length !== 4 || typeof data[0] !== "string" ||
    typeof data[1] !== "boolean" || !Number.isSafeInteger(data[2]) ||
    !Number.isSafeInteger(data[3]) || data[3] < 0
  ) throw invalidParam("Unknown pagination token");
  return { root: data[0], suggestedOnly: data[1], maxDepth: data[2], skip: data[3] };
}
