/** Reads of room heads, current state, state around events, and membership. */
import { getManyChunked } from "./get_many.ts";
import {
  splitStateKey,
  type StateKey,
  stateKey,
  type StateMap,
  toRoomEvent,
} from "../domain/protocol/events.ts";
import type { Membership, RoomHeadView } from "../domain/ports/event_store.ts";
import { roomVersion } from "../domain/protocol/room_versions.ts";
import { readEventStateGroups, readStoredEvent } from "./event_reads.ts";
import { loadGroupState, StateGroupPlanner } from "./state_groups.ts";
import type { StoreContext } from "./store_context.ts";
import type { GroupId, MembershipRecord, RoomHead } from "./store_records.ts";
import { readOutliers } from "./outlier_store.ts";

/** A room's head; null when the room has no events. */
export async function readRoomHead(
  ctx: StoreContext,
  roomId: string,
): Promise<RoomHeadView | null> {
  const entry = await ctx.kv.get<RoomHead>(ctx.keys.head(roomId));
  if (!entry.value) return null;
  return {
    roomId,
    roomVersion: entry.value.room_version,
    firstPosition: entry.value.first,
    lastPosition: entry.value.last,
    forwardExtremities: [...entry.value.extremities],
    currentStateId: String(entry.value.state_group),
    versionstamp: entry.versionstamp,
  };
}

/** The current state from its projection. */
export async function readCurrentState(ctx: StoreContext, roomId: string): Promise<StateMap> {
  const state: StateMap = new Map();
  const iter = ctx.kv.list<string>({ prefix: ctx.keys.currentStatePrefix(roomId) }, {
    batchSize: 1000,
  });
  for await (const entry of iter) {
    const n = entry.key.length;
    state.set(stateKey(entry.key[n - 2] as string, entry.key[n - 1] as string), entry.value);
  }
  return state;
}

/** One current state entry's event ID. */
export async function readCurrentStateEventId(
  ctx: StoreContext,
  roomId: string,
  type: string,
  key: string,
): Promise<string | null> {
  return (await ctx.kv.get<string>(ctx.keys.currentState(roomId, type, key))).value;
}

/** Several current state entries, read in parallel getMany chunks. */
export async function readCurrentStateEventIds(
  ctx: StoreContext,
  roomId: string,
  keys: readonly StateKey[],
): Promise<StateMap> {
  const found: StateMap = new Map();
  const entries = await getManyChunked<string>(
    ctx.kv,
    keys.map((key) => ctx.keys.currentState(roomId, ...splitStateKey(key))),
  );
  entries.forEach((entry, i) => {
    if (entry.value !== null) found.set(keys[i], entry.value);
  });
  return found;
}

/** The state before or after an event (a private copy). */
export async function readStateAtEvent(
  ctx: StoreContext,
  eventId: string,
  at: "before" | "after",
): Promise<StateMap | null> {
  const [groups, event] = await Promise.all([
    readEventStateGroups(ctx, eventId),
    readStoredEvent(ctx, eventId),
  ]);
  if (!groups || !event) return null;
  return new Map(await loadGroupState(ctx, event.roomId, groups[at]));
}

/** The state after `eventIds` of `roomId`, resolved when they differ; no group is written. */
export async function readStateAfterEvents(
  ctx: StoreContext,
  roomId: string,
  eventIds: readonly string[],
): Promise<StateMap> {
  const groups: (GroupId | null)[] = [];
  for (const id of eventIds) {
    const event = await readStoredEvent(ctx, id);
    if (!event || event.roomId !== roomId) continue;
    const around = await readEventStateGroups(ctx, id);
    if (around && !groups.includes(around.after)) groups.push(around.after);
  }
  if (groups.length === 0) return new Map();
  const planner = new StateGroupPlanner(ctx, roomId, 0);
  if (groups.length === 1) return new Map(await planner.state(groups[0]));
  const head = await ctx.kv.get<RoomHead>(ctx.keys.head(roomId));
  const version = roomVersion(head.value?.room_version ?? "");
  if (!version) throw new Error(`room ${roomId} has no known version`);
  const states = await Promise.all(groups.map((g) => planner.state(g)));
  const rejected = new Set<string>();
  return await ctx.resolver({
    version,
    stateMaps: states.map((s) => new Map(s)),
    getEvent: async (id) => {
      // A joined room's state names outliers (its events from before our join).
      const event = await readStoredEvent(ctx, id) ?? (await readOutliers(ctx, [id])).get(id);
      if (!event || event.roomId !== roomId) return undefined;
      if (event.status === "rejected") rejected.add(id);
      return toRoomEvent(event.pdu, id, version);
    },
    isRejected: (id) => rejected.has(id),
  });
}

async function listMemberships(
  ctx: StoreContext,
  prefix: Deno.KvKey,
  memberships: readonly string[] | undefined,
  toMembership: (key: Deno.KvKey, record: MembershipRecord) => Membership,
): Promise<Membership[]> {
  const out: Membership[] = [];
  for await (const entry of ctx.kv.list<MembershipRecord>({ prefix }, { batchSize: 1000 })) {
    if (memberships && !memberships.includes(entry.value.membership)) continue;
    out.push(toMembership(entry.key, entry.value));
  }
  return out;
}

/** Members of a room from the membership projection. */
export function readMembers(
  ctx: StoreContext,
  roomId: string,
  memberships?: readonly string[],
): Promise<Membership[]> {
  return listMemberships(ctx, ctx.keys.roomMemberPrefix(roomId), memberships, (key, record) => ({
    userId: key[key.length - 1] as string,
    roomId,
    membership: record.membership,
    eventId: record.event_id,
  }));
}

/** Rooms of a user from the membership projection. */
export function readRoomsOfUser(
  ctx: StoreContext,
  userId: string,
  memberships?: readonly string[],
): Promise<Membership[]> {
  return listMemberships(ctx, ctx.keys.userRoomPrefix(userId), memberships, (key, record) => ({
    userId,
    roomId: key[key.length - 1] as string,
    membership: record.membership,
    eventId: record.event_id,
  }));
}
