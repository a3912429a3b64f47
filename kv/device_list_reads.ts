/**
 * The KV side of device-list tracking: the global device-list change index (kv/device_list_log.ts)
 * and the event store's membership projections, including `roomid_memberchange`, which the
 * append path writes in the same commit as each membership change of current state. A room's
 * `roomid_memberchangehead` is rewritten by every such commit, so its versionstamp says whether
 * the room had member changes after a token without listing anything (ten rooms per getMany);
 * `memberchangestamp_roomid` lists the commits with member changes server-wide by versionstamp,
 * so a short window is answered by one short list instead.
 */
import type {
  DeviceListChangeReader,
  MemberTransition,
  StampedMembership,
} from "../domain/ports/device_list_reader.ts";
import { deviceListChangesWithin, usersWithDeviceListChanges } from "./device_list_log.ts";
import { getManyChunked } from "./get_many.ts";
import { EventStoreKeys } from "./schema.ts";
import type { MemberChangeHead, MemberChangeRecord, MembershipRecord } from "./store_records.ts";
import { parseSyncToken } from "./stream_tokens.ts";

/** Rooms whose member changes are listed at once. */
const LISTS_IN_FLIGHT = 16;

/** Device-list tracking reads over one KV database (live keys, no namespace). */
export class KvDeviceListReader implements DeviceListChangeReader {
  readonly #keys: EventStoreKeys;

  /** Over `kv`; `keys` names the event store's maps (the live ones by default). */
  constructor(private readonly kv: Deno.Kv, keys: EventStoreKeys = new EventStoreKeys()) {
    this.#keys = keys;
  }

  deviceListChanges(since: string, upTo: string, limit: number): Promise<Set<string> | null> {
    return deviceListChangesWithin(this.kv, since, upTo, limit);
  }

  deviceListChangesOf(
    userIds: readonly string[],
    since: string,
    upTo: string,
  ): Promise<Set<string>> {
    return usersWithDeviceListChanges(this.kv, userIds, since, upTo);
  }

  async memberChangeCommitsAfter(
    since: string,
    limit: number,
  ): Promise<{ roomId: string; versionstamp: string }[] | null> {
    const after = parseSyncToken(since);
    const prefix = this.#keys.memberChangeStampPrefix();
    const out: { roomId: string; versionstamp: string }[] = [];
    // One more than `limit`, plus the entry at `since` itself, which is not after it.
    const iter = this.kv.list<string>({ prefix, start: [...prefix, after] }, {
      limit: limit + 2,
      batchSize: Math.min(limit + 2, 500),
    });
    for await (const entry of iter) {
      const stamp = entry.key[entry.key.length - 1] as string;
      if (stamp === after) continue;
      if (out.length === limit) return null;
      out.push({ roomId: entry.value, versionstamp: stamp });
    }
    return out;
  }

  membershipsOf(userId: string): Promise<StampedMembership[]> {
    return this.#list(this.#keys.userRoomPrefix(userId), (key) => ({
      roomId: key[key.length - 1] as string,
      userId,
    }));
  }

  membersOf(roomId: string): Promise<StampedMembership[]> {
    return this.#list(this.#keys.roomMemberPrefix(roomId), (key) => ({
      roomId,
      userId: key[key.length - 1] as string,
    }));
  }

  async memberTransitionsAfter(
    roomIds: readonly string[],
    since: string,
  ): Promise<Map<string, MemberTransition[]>> {
    const after = parseSyncToken(since);
    const unique = [...new Set(roomIds)];
    const heads = await getManyChunked<MemberChangeHead>(
      this.kv,
      unique.map((roomId) => this.#keys.memberChangeHead(roomId)),
    );
    const changed = unique.filter((_, i) => {
      const stamp = heads[i].versionstamp;
      return stamp !== null && stamp > after;
    });
    const out = new Map<string, MemberTransition[]>();
    for (let i = 0; i < changed.length; i += LISTS_IN_FLIGHT) {
      const slice = changed.slice(i, i + LISTS_IN_FLIGHT);
      const lists = await Promise.all(slice.map((roomId) => this.#transitionsAfter(roomId, after)));
      slice.forEach((roomId, j) => {
        if (lists[j].length > 0) out.set(roomId, lists[j]);
      });
    }
    return out;
  }

  /** A room's member changes committed after versionstamp `after`, newest first. */
  async #transitionsAfter(roomId: string, after: string): Promise<MemberTransition[]> {
    const out: MemberTransition[] = [];
    // Forward positions are committed in order, so versionstamps never grow walking back.
    const iter = this.kv.list<MemberChangeRecord>(
      { prefix: this.#keys.memberChangePrefix(roomId) },
      { reverse: true, batchSize: 64 },
    );
    for await (const entry of iter) {
      if (entry.versionstamp <= after) break;
      out.push({
        userId: entry.key[entry.key.length - 1] as string,
        membership: entry.value.membership,
        prev: entry.value.prev,
        versionstamp: entry.versionstamp,
      });
    }
    return out;
  }

  async #list(
    prefix: Deno.KvKey,
    ids: (key: Deno.KvKey) => { roomId: string; userId: string },
  ): Promise<StampedMembership[]> {
    const out: StampedMembership[] = [];
    for await (const entry of this.kv.list<MembershipRecord>({ prefix }, { batchSize: 1000 })) {
      out.push({
        ...ids(entry.key),
        membership: entry.value.membership,
        versionstamp: entry.versionstamp,
      });
    }
    return out;
  }
}
