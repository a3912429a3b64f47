/**
 * The writes of a planned append batch (kv/projections.ts plans it): each event's own writes
 * (log entry, chunks, ID index, state groups around it, search postings), the projection
 * entries that scale with a state change (current state, membership, member changes, state
 * usage, room servers; a large join commits these ahead, kv/large_join.ts), and the batch's other writes
 * (head check and head, relations, redactions, markers, room-list bumps, requests' extras).
 */
import type { StateKey } from "../domain/protocol/events.ts";
import { splitStateKey } from "../domain/protocol/events.ts";
import { splitChunks } from "./chunked_value.ts";
import { type CommitSize, measureCommit, type PlannedMutation } from "./commit_budget.ts";
import {
  type CurrentChange,
  memberChangeMarkerWrites,
  memberChangeRecordWrites,
  type PlannedMemberChange,
} from "./member_change_plan.ts";
import type { PlannedEvent, PlannedRequest } from "./projections.ts";
import type { RelationPlan } from "./relation_projection.ts";
import { type RoomServersPlan, roomServerWrites } from "./room_servers.ts";
import { type BackwardExtremityPlan, backwardExtremityWrites } from "./backward_extremities.ts";
import { searchPostingWrites } from "./search_projection.ts";
import { roomListWrites } from "./room_list_projection.ts";
import { type StateUsagePlan, stateUsageWrites } from "./state_usage_plan.ts";
import { plannedWakes } from "./wake_keys.ts";
import type { StoreContext } from "./store_context.ts";
import type { LogEntry, RoomHead } from "./store_records.ts";

/** What the write builders read of a batch plan (RoomBatchPlanner's public state). */
export interface BatchWriteSource {
  readonly ctx: StoreContext;
  readonly roomId: string;
  readonly headVersionstamp: string | null;
  head: RoomHead | null;
  events: Map<string, PlannedEvent>;
  currentChanges: Map<StateKey, CurrentChange>;
  requests: PlannedRequest[];
  redactions: Map<string, string[]>;
  memberChanges: PlannedMemberChange[];
  stateUsage: StateUsagePlan;
  roomServers: RoomServersPlan;
  backwardExtremities: BackwardExtremityPlan;
  relations: RelationPlan;
  searchDeletes: PlannedMutation[];
}

const eventWritesCache = new WeakMap<
  PlannedEvent,
  { mutations: PlannedMutation[]; size: CommitSize }
>();

/** An event's own writes never change once planned, so they are built and measured once. */
export function eventWrites(
  ctx: StoreContext,
  roomId: string,
  planned: PlannedEvent,
): { mutations: PlannedMutation[]; size: CommitSize } {
  const cached = eventWritesCache.get(planned);
  if (cached) return cached;
  const keys = ctx.keys;
  const [first, ...rest] = splitChunks(planned.pduBytes);
  const entry: LogEntry = {
    event_id: planned.eventId,
    status: planned.status,
    seq: planned.seq,
    pdu: first,
    chunks: rest.length + 1,
  };
  if (planned.stateBefore !== undefined) entry.state_before = planned.stateBefore;
  const mutations: PlannedMutation[] = [];
  if (planned.checkUnstored) {
    mutations.push({ op: "check", key: keys.eventPosition(planned.eventId), versionstamp: null });
  }
  mutations.push(
    { op: "set", key: keys.log(roomId, planned.position), value: entry },
    ...rest.map((chunk, i): PlannedMutation => ({
      op: "set",
      key: keys.pduChunk(planned.eventId, i + 1),
      value: chunk,
    })),
    {
      op: "set",
      key: keys.eventPosition(planned.eventId),
      value: { room_id: roomId, position: planned.position },
    },
    { op: "set", key: keys.eventStateGroups(planned.eventId), value: planned.groups },
  );
  if (planned.status === "accepted" && !planned.searchRedacted) {
    mutations.push(...searchPostingWrites(keys, roomId, planned.position, planned.event));
  }
  const writes = { mutations, size: measureCommit(mutations) };
  eventWritesCache.set(planned, writes);
  return writes;
}

/**
 * Projection entries that scale with the size of a state change (current state, membership
 * both ways, member change records, state usage, room servers): all sets and deletes, no checks.
 */
export function bulkProjectionWrites(plan: BatchWriteSource): PlannedMutation[] {
  const keys = plan.ctx.keys;
  const out: PlannedMutation[] = [];
  for (const [key, change] of plan.currentChanges) {
    const [type, stateKeyValue] = splitStateKey(key);
    const member = type === "m.room.member";
    const stateEntry = keys.currentState(plan.roomId, type, stateKeyValue);
    if (change === null) {
      out.push({ op: "delete", key: stateEntry });
      if (member) {
        out.push({ op: "delete", key: keys.roomMember(plan.roomId, stateKeyValue) });
        out.push({ op: "delete", key: keys.userRoom(stateKeyValue, plan.roomId) });
      }
      continue;
    }
    out.push({ op: "set", key: stateEntry, value: change.eventId });
    if (member) {
      const value = { membership: change.membership!, event_id: change.eventId };
      out.push({ op: "set", key: keys.roomMember(plan.roomId, stateKeyValue), value });
      out.push({ op: "set", key: keys.userRoom(stateKeyValue, plan.roomId), value });
    }
  }
  out.push(...stateUsageWrites(keys, plan.roomId, plan.stateUsage));
  out.push(...roomServerWrites(keys, plan.roomId, plan.roomServers));
  out.push(...memberChangeRecordWrites(plan.ctx, plan.roomId, plan.memberChanges));
  return out;
}

/** Writes that depend on the whole batch: head check and head, relations, markers, extras. */
export function batchWrites(plan: BatchWriteSource): PlannedMutation[] {
  const keys = plan.ctx.keys;
  const out: PlannedMutation[] = [
    { op: "check", key: keys.head(plan.roomId), versionstamp: plan.headVersionstamp },
  ];
  if (plan.events.size > 0 && plan.head) {
    out.push({ op: "set", key: keys.head(plan.roomId), value: plan.head });
  }
  if (plan.events.size > 0 && plan.ctx.keys.namespace.length === 0) {
    // Syncs watching the room, in whatever process, wake with this commit. The member events'
    // users are woken beside it by the event log (memberWakeUsers), as far as the commit holds.
    out.push(...plannedWakes({ roomIds: [plan.roomId] }));
  }
  out.push(...plan.relations.mutations());
  out.push(...plan.searchDeletes);
  out.push(...roomListWrites(keys, plan.roomId, plan.events.values()));
  out.push(...backwardExtremityWrites(keys, plan.roomId, plan.backwardExtremities));
  for (const [target, redactionIds] of plan.redactions) {
    out.push({ op: "set", key: keys.redactions(plan.roomId, target), value: redactionIds });
  }
  out.push(...memberChangeMarkerWrites(plan.ctx, plan.roomId, plan.memberChanges));
  for (const { request, appended } of plan.requests) {
    for (const m of request.extraMutations?.(appended) ?? []) {
      const key = m.key as Deno.KvKey;
      if (m.op === "set") out.push({ op: "set", key, value: m.value });
      else if (m.op === "delete") out.push({ op: "delete", key });
      else out.push({ op: "check", key, versionstamp: m.versionstamp });
    }
  }
  return out;
}

/**
 * Users whose wake keys an append bumps besides the room's: the state_key of every
 * m.room.member event it appends (an invite, or the user's own join from another device,
 * reaches a sync that does not watch the room yet). None when replay rebuilds under a
 * namespace: nothing waits on it.
 */
export function memberWakeUsers(plan: BatchWriteSource): string[] {
  if (plan.ctx.keys.namespace.length > 0) return [];
  const userIds: string[] = [];
  for (const { event } of plan.events.values()) {
    if (event.type === "m.room.member" && typeof event.state_key === "string") {
      userIds.push(event.state_key);
    }
  }
  return userIds;
}
