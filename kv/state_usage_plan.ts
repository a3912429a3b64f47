/**
 * Planning the state usage projection (`roomid_stateusage`): byte counts of a room's non-member
 * current state, per entry, per sender and for the room, moved with current state in the same
 * commit (the state caps of domain/rooms/state_quota.ts read them).
 */
import { type RoomEvent, splitStateKey, type StateKey } from "../domain/protocol/events.ts";
import { countsTowardStateQuota, stateEntryBytes } from "../domain/rooms/state_quota.ts";
import type { PlannedMutation } from "./commit_budget.ts";
import { getManyChunked } from "./get_many.ts";
import type { StoreContext } from "./store_context.ts";

/** One non-member current state entry's size and sender (roomid_stateusage). */
export interface StateUsageEntry {
  sender: string;
  bytes: number;
}

/**
 * The state usage a batch moves: entries it changes (null removes), and the room's and users'
 * totals as they stand after the batch (read once, under the head the commit checks).
 */
export interface StateUsagePlan {
  entries: Map<StateKey, StateUsageEntry | null>;
  room: number | undefined;
  users: Map<string, number>;
}

/** An empty plan. */
export function emptyStateUsagePlan(): StateUsagePlan {
  return { entries: new Map(), room: undefined, users: new Map() };
}

/** A copy to plan on; the original stays as it was. */
export function forkStateUsagePlan(plan: StateUsagePlan): StateUsagePlan {
  return { entries: new Map(plan.entries), room: plan.room, users: new Map(plan.users) };
}

/**
 * Move the byte counts of non-member state with current state: the replaced entry leaves its
 * sender's and the room's totals, the new one joins them. Committed values are read under the
 * head this commit checks, so every commit to the room rewrites them in turn.
 */
export async function noteStateUsage(
  ctx: StoreContext,
  roomId: string,
  plan: StateUsagePlan,
  changes: readonly (readonly [StateKey, RoomEvent | null, ...unknown[]])[],
): Promise<void> {
  const counted = changes.filter(([key]) => countsTowardStateQuota(splitStateKey(key)[0]));
  if (counted.length === 0) return;
  const keys = ctx.keys;
  const unread = [...new Set(counted.map(([key]) => key))].filter((k) => !plan.entries.has(k));
  const entryReads = await getManyChunked<StateUsageEntry>(
    ctx.kv,
    unread.map((key) => keys.stateUsageEntry(roomId, ...splitStateKey(key))),
  );
  unread.forEach((key, i) => plan.entries.set(key, entryReads[i].value));
  if (plan.room === undefined) {
    plan.room = (await ctx.kv.get<number>(keys.stateUsageRoom(roomId))).value ?? 0;
  }
  const senders = new Set<string>();
  for (const [key, event] of counted) {
    const old = plan.entries.get(key);
    if (old) senders.add(old.sender);
    if (event) senders.add(event.sender);
  }
  const users = [...senders].filter((u) => !plan.users.has(u));
  const userReads = await getManyChunked<number>(
    ctx.kv,
    users.map((u) => keys.stateUsageUser(roomId, u)),
  );
  users.forEach((u, i) => plan.users.set(u, userReads[i].value ?? 0));
  for (const [key, event] of counted) {
    const old = plan.entries.get(key);
    if (old) {
      plan.room -= old.bytes;
      plan.users.set(old.sender, plan.users.get(old.sender)! - old.bytes);
    }
    if (event === null) {
      plan.entries.set(key, null);
      continue;
    }
    const bytes = stateEntryBytes(event.type, event.state_key!, event.content);
    plan.room += bytes;
    plan.users.set(event.sender, plan.users.get(event.sender)! + bytes);
    plan.entries.set(key, { sender: event.sender, bytes });
  }
}

/** Writes of the state usage projection; a total of zero is deleted, as if never written. */
export function stateUsageWrites(
  keys: StoreContext["keys"],
  roomId: string,
  plan: StateUsagePlan,
): PlannedMutation[] {
  const out: PlannedMutation[] = [];
  const put = (key: Deno.KvKey, value: unknown): PlannedMutation =>
    value === null || value === 0 ? { op: "delete", key } : { op: "set", key, value };
  for (const [stateKeyValue, entry] of plan.entries) {
    out.push(put(keys.stateUsageEntry(roomId, ...splitStateKey(stateKeyValue)), entry));
  }
  if (plan.room !== undefined) out.push(put(keys.stateUsageRoom(roomId), plan.room));
  for (const [userId, bytes] of plan.users) {
    out.push(put(keys.stateUsageUser(roomId, userId), bytes));
  }
  return out;
}
