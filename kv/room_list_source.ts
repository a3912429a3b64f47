/**
 * The KV side of sliding sync's room lists (domain/sliding_sync/room_list.ts RoomListSource):
 * a user's rooms with what the filters and the sort need: one list of the user's memberships,
 * the remote memberships and `m.direct` side by side, then one key per joined room (its
 * activity) through getMany, ten at a time in parallel, plus the create type or encryption only
 * when a filter asks, and bump stamps only for the rooms sent (measured with :memory: KV: a
 * getMany of ten keys costs about 0.11 ms, so three keys per room made 1,000 rooms 34 ms of
 * reads; one makes it 11).
 */
import type { AccountDataStore } from "../domain/ports/account_data_store.ts";
import type {
  RemoteMembership,
  RemoteMembershipStore,
} from "../domain/ports/remote_membership_store.ts";
import type { JsonObject } from "../domain/protocol/json.ts";
import type {
  CandidateRoom,
  ListedMembership,
  RoomFacts,
  RoomListSource,
} from "../domain/sliding_sync/room_list.ts";
import { readStoredEvents } from "./event_reads.ts";
import { findEvents } from "./outlier_store.ts";
import { getManyChunked } from "./get_many.ts";
import { LruCache } from "./lru_cache.ts";
import type { RoomBumpRecord, RoomTypeRecord } from "./room_list_projection.ts";
import type { StoreContext } from "./store_context.ts";

/** What the source reads besides the event store. */
export interface KvRoomListSourceDeps {
  /** Invites and knocks over federation, in rooms this server has no copy of. */
  remoteMemberships?: Pick<RemoteMembershipStore, "ofUser">;
  /** For `m.direct`. */
  accountData: Pick<AccountDataStore, "get">;
}

const LISTED: ReadonlySet<string> = new Set(["join", "invite", "knock", "leave", "ban"]);

/** A user's membership in one room, local or remote, before the per-room reads. */
interface Placed {
  roomId: string;
  membership: ListedMembership;
  eventId: string;
  versionstamp: string;
  /** From a remote membership: the room has no state here, only the stripped state. */
  remote?: RemoteMembership;
}

/**
 * A versionstamp as a number that grows with it: its 8-byte commit version (the 2 bytes that
 * order transactions inside one commit batch are dropped, so the number stays a safe integer:
 * a local KV counts commits, Deno Deploy's FoundationDB about a million versions a second).
 */
export function versionstampNumber(versionstamp: string): number {
  return Number.parseInt(versionstamp.slice(0, 16), 16);
}

/** Rooms whose create type is kept in memory: a create event never changes, so none goes stale. */
const ROOM_TYPE_CACHE = 20_000;

/** Leave events whose sender is kept in memory. */
const LEAVE_SENDER_CACHE = 20_000;

/** The RoomListSource over the event store's projections. */
export class KvRoomListSource implements RoomListSource {
  readonly #roomTypes = new LruCache<string, string | null>({ capacity: ROOM_TYPE_CACHE });
  /**
   * Senders of leave and invite events (event ID -> sender): an account that left hundreds of rooms would
   * otherwise read every leave on every request to tell its own leaves from kicks. Events never
   * change, so none goes stale.
   */
  readonly #leaveSenders = new LruCache<string, string>({ capacity: LEAVE_SENDER_CACHE });

  /** Over the event store's context (its keys and caches) and the other stores it reads. */
  constructor(private readonly ctx: StoreContext, private readonly deps: KvRoomListSourceDeps) {}

  /** See RoomListSource.candidateRooms. */
  async candidateRooms(
    userId: string,
    since?: string,
    facts: RoomFacts = { encryption: true, roomType: true },
  ): Promise<CandidateRoom[]> {
    const { kv, keys } = this.ctx;
    const [local, remote, direct] = await Promise.all([
      Array.fromAsync(kv.list<{ membership: string; event_id: string }>({
        prefix: keys.userRoomPrefix(userId),
      }, { batchSize: 1000 })),
      this.deps.remoteMemberships?.ofUser(userId) ?? [],
      this.deps.accountData.get(userId, null, "m.direct"),
    ]);
    const byRoom = new Map<string, Placed>();
    for (const entry of local) {
      const membership = entry.value.membership;
      if (!LISTED.has(membership)) continue;
      const roomId = entry.key[entry.key.length - 1] as string;
      byRoom.set(roomId, {
        roomId,
        membership: membership as ListedMembership,
        eventId: entry.value.event_id,
        versionstamp: entry.versionstamp,
      });
    }
    // As /sync's RoomStream: the newer of the local and the remote membership wins.
    for (const m of remote) {
      if (!LISTED.has(m.membership)) continue;
      const held = byRoom.get(m.roomId);
      if (held && held.versionstamp > m.versionstamp) continue;
      byRoom.set(m.roomId, {
        roomId: m.roomId,
        membership: m.membership as ListedMembership,
        eventId: m.eventId,
        versionstamp: m.versionstamp,
        remote: m,
      });
    }
    const rooms = await this.#withoutIgnoredInvites(
      await this.#withoutOwnLeaves([...byRoom.values()], userId, since),
      facts.ignored,
    );
    const dmRooms = directRooms(direct);
    const localRooms = rooms.filter((r) => !r.remote);
    // Only a joined room's activity is read; any other membership is placed by its own commit.
    const joined = localRooms.filter((r) => r.membership === "join");
    const untyped = facts.roomType
      ? localRooms.filter((r) => this.#roomTypes.get(r.roomId) === undefined)
      : [];
    const [activities, types, encryption] = await Promise.all([
      getManyChunked<RoomBumpRecord>(kv, joined.map((r) => keys.roomActivity(r.roomId))),
      getManyChunked<RoomTypeRecord>(kv, untyped.map((r) => keys.roomType(r.roomId))),
      facts.encryption
        ? getManyChunked(
          kv,
          localRooms.map((r) => keys.currentState(r.roomId, "m.room.encryption", "")),
        )
        : [],
    ]);
    const activityOf = new Map<string, string>();
    joined.forEach((r, i) => {
      const stamp = activities[i].versionstamp;
      if (stamp !== null) activityOf.set(r.roomId, stamp);
    });
    const unprojected: string[] = [];
    untyped.forEach((r, i) => {
      const value = types[i].value;
      if (value) this.#roomTypes.set(r.roomId, value.type);
      else unprojected.push(r.roomId);
    });
    if (unprojected.length > 0) await this.#typesFromCreate(unprojected);
    const out: CandidateRoom[] = [];
    localRooms.forEach((room, i) => {
      // A joined room moves with its activity; any other membership stays where it happened.
      // A joined room without an entry (a store from before the projection, until replay
      // rebuilt it) falls back to the membership's commit.
      const stamp = activityOf.get(room.roomId) ?? room.versionstamp;
      const found: { isEncrypted?: boolean; roomType?: string | null } = {};
      if (facts.encryption) found.isEncrypted = encryption[i].versionstamp !== null;
      if (facts.roomType) found.roomType = this.#roomTypes.get(room.roomId) ?? null;
      out.push(candidate(room, versionstampNumber(stamp), dmRooms, found));
    });
    for (const room of rooms) {
      if (!room.remote) continue;
      out.push(candidate(room, versionstampNumber(room.versionstamp), dmRooms, {
        ...strippedFacts(room.remote),
      }));
    }
    return out;
  }

  /** See RoomListSource.bumpStamps. */
  async bumpStamps(rooms: readonly CandidateRoom[]): Promise<void> {
    const missing = rooms.filter((room) => room.bumpStamp === undefined);
    const bumps = await getManyChunked<RoomBumpRecord>(
      this.ctx.kv,
      missing.map((room) => this.ctx.keys.roomBump(room.roomId)),
    );
    missing.forEach((room, i) => {
      // No bump event held (all of them backfilled after a join over federation): the join,
      // as Synapse falls back to the membership's position.
      const stamp = bumps[i].versionstamp ?? room.membershipStamp;
      room.bumpStamp = versionstampNumber(stamp);
    });
  }

  /** See RoomListSource.spaceChildren. */
  async spaceChildren(spaceIds: readonly string[]): Promise<Set<string>> {
    const { kv, keys } = this.ctx;
    const eventIds = (await Promise.all(spaceIds.map((spaceId) =>
      Array.fromAsync(kv.list<string>({
        prefix: keys.currentStatePrefix(spaceId, "m.space.child"),
      }))
    ))).flat().map((entry) => entry.value);
    const events = await readStoredEvents(this.ctx, eventIds);
    const children = new Set<string>();
    for (const event of events.values()) {
      const via = event.pdu.content?.via;
      // An m.space.child without `via` is how a child is removed (spec, "Spaces").
      if (typeof event.pdu.state_key === "string" && Array.isArray(via) && via.length > 0) {
        children.add(event.pdu.state_key);
      }
    }
    return children;
  }

  /**
   * Create types of rooms without a roomid_roomtype entry, from the create event in current
   * state: a room joined over federation holds its create event as an outlier of the join's
   * state (no log append wrote the projection), and a store from before the projection has
   * none until replay. Cached like the projected ones.
   */
  async #typesFromCreate(roomIds: readonly string[]): Promise<void> {
    const ids = await getManyChunked<string>(
      this.ctx.kv,
      roomIds.map((roomId) => this.ctx.keys.currentState(roomId, "m.room.create", "")),
    );
    const eventIds = ids.flatMap((e) => (e.value === null ? [] : [e.value]));
    const events = await findEvents(this.ctx, eventIds);
    ids.forEach((entry, i) => {
      const event = entry.value === null ? undefined : events.get(entry.value);
      if (!event) return;
      const type = event.pdu.content?.type;
      this.#roomTypes.set(roomIds[i], typeof type === "string" ? type : null);
    });
  }

  /**
   * Drop invites from ignored users (the read pipeline's strippedState delivers none, so /sync
   * shows no trace of them). Invite events never change: their senders are cached with the
   * leaves'. Nothing is read when the user ignores no one.
   */
  async #withoutIgnoredInvites(
    rooms: Placed[],
    ignored: ReadonlySet<string> | undefined,
  ): Promise<Placed[]> {
    if (!ignored || ignored.size === 0) return rooms;
    const invites = rooms.filter((r) => r.membership === "invite");
    const toRead = invites.filter((r) =>
      !r.remote && this.#leaveSenders.get(r.eventId) === undefined
    );
    if (toRead.length > 0) {
      const events = await readStoredEvents(this.ctx, toRead.map((r) => r.eventId));
      for (const [eventId, event] of events) this.#leaveSenders.set(eventId, event.pdu.sender);
    }
    return rooms.filter((r) => {
      if (r.membership !== "invite") return true;
      const sender = r.remote ? r.remote.pdu.sender : this.#leaveSenders.get(r.eventId);
      return sender === undefined || !ignored.has(sender);
    });
  }

  /**
   * Drop rooms the user left themselves, unless the leave came after `since` (Synapse's
   * filter_membership_for_sync): a kick (a leave sent by someone else) stays listed. Local
   * leaves need their event for the sender; only those committed at or before `since` are read.
   */
  async #withoutOwnLeaves(rooms: Placed[], userId: string, since?: string): Promise<Placed[]> {
    const isNewlyLeft = (r: Placed) => since !== undefined && r.versionstamp > since;
    const toRead = rooms.filter((r) =>
      r.membership === "leave" && !r.remote && !isNewlyLeft(r) &&
      this.#leaveSenders.get(r.eventId) === undefined
    );
    if (toRead.length > 0) {
      const events = await readStoredEvents(this.ctx, toRead.map((r) => r.eventId));
      for (const [eventId, event] of events) this.#leaveSenders.set(eventId, event.pdu.sender);
    }
    return rooms.filter((r) => {
      if (r.membership !== "leave" || isNewlyLeft(r)) return true;
      const sender = r.remote ? r.remote.pdu.sender : this.#leaveSenders.get(r.eventId);
      return sender !== undefined && sender !== userId;
    });
  }
}

/** A candidate room; one not joined has its bump stamp already: its membership's commit. */
function candidate(
  room: Placed,
  activity: number,
  dmRooms: ReadonlySet<string>,
  facts: { isEncrypted?: boolean; roomType?: string | null },
): CandidateRoom {
  const out: CandidateRoom = {
    roomId: room.roomId,
    membership: room.membership,
    membershipEventId: room.eventId,
    membershipStamp: room.versionstamp,
    activity,
    isDm: dmRooms.has(room.roomId),
    ...facts,
  };
  if (room.membership !== "join") out.bumpStamp = versionstampNumber(room.versionstamp);
  return out;
}

/** Every room ID named in `m.direct` (user ID -> room IDs); malformed parts are ignored. */
function directRooms(content: JsonObject | null): Set<string> {
  const rooms = new Set<string>();
  for (const value of Object.values(content ?? {})) {
    if (!Array.isArray(value)) continue;
    for (const roomId of value) if (typeof roomId === "string") rooms.add(roomId);
  }
  return rooms;
}

/** Encryption and create type of a room known only from an invite's or knock's stripped state. */
function strippedFacts(m: RemoteMembership): { isEncrypted: boolean; roomType: string | null } {
  const unsigned = m.pdu.unsigned as JsonObject | undefined;
  const stripped = unsigned?.invite_room_state ?? unsigned?.knock_room_state;
  let isEncrypted = false;
  let roomType: string | null = null;
  if (Array.isArray(stripped)) {
    for (const event of stripped) {
      if (typeof event !== "object" || event === null || Array.isArray(event)) continue;
      const e = event as JsonObject;
      if (e.type === "m.room.encryption" && e.state_key === "") isEncrypted = true;
      const type = (e.content as JsonObject | undefined)?.type;
      if (e.type === "m.room.create" && e.state_key === "" && typeof type === "string") {
        roomType = type;
      }
    }
  }
  return { isEncrypted, roomType };
}
